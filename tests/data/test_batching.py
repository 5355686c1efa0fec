"""Tests of mlxseq/data/batching.py: token budget, coverage, order, resume, shapes, BPTT streams."""

import json

import numpy as np
import pytest

from mlxseq.data.batching import (
    BatchSampler,
    StreamBatcher,
    pad_batch,
    pad_pairs,
    pair_lengths,
    padded_length,
)

MAX_TOKENS = 512


@pytest.fixture(scope="module")
def pairs():
    """300 synthetic id pairs, source lengths 1-60, target lengths correlated with them."""
    rng = np.random.default_rng(7)
    sources, targets = [], []
    for _ in range(300):
        n = int(rng.integers(1, 61))
        m = int(np.clip(n + rng.integers(-5, 8), 0, 70))
        sources.append(rng.integers(4, 100, size=n).tolist())
        targets.append(rng.integers(4, 100, size=m).tolist())
    return sources, targets


def sampler_for(pairs, **options):
    return BatchSampler(pair_lengths(*pairs), MAX_TOKENS, **options)


def test_padded_length_rounds_to_a_multiple_or_a_boundary():
    assert [padded_length(n, 8) for n in (0, 1, 8, 9, 17)] == [8, 8, 8, 16, 24]
    assert [padded_length(n, boundaries=[10, 20, 40]) for n in (1, 10, 11, 40)] == [10, 10, 20, 40]
    with pytest.raises(ValueError, match="length 41 exceeds the largest bucket boundary 40"):
        padded_length(41, boundaries=[10, 20, 40])


def test_pad_batch_values_lengths_and_shape():
    ids, lengths = pad_batch([[5, 6, 7], [8], [9, 10, 11, 12, 13, 14, 15, 16, 17]], pad_id=0, multiple=4)
    assert ids.dtype.__str__() == "mlx.core.int32" and ids.shape == (3, 12)
    assert np.array(lengths).tolist() == [3, 1, 9]
    expected = np.zeros((3, 12), dtype=np.int32)
    expected[0, :3], expected[1, :1], expected[2, :9] = [5, 6, 7], [8], range(9, 18)
    np.testing.assert_array_equal(np.array(ids), expected)
    with pytest.raises(ValueError, match="sequence 1 of the batch is empty"):
        pad_batch([[1], []])


def test_pad_pairs_adds_bos_to_decoder_input_and_eos_to_decoder_target():
    batch = pad_pairs([[5, 6], [7]], [[8, 9, 10], []], pad_id=0, bos_id=2, eos_id=3, multiple=4)
    np.testing.assert_array_equal(np.array(batch.source), [[5, 6, 0, 0], [7, 0, 0, 0]])
    np.testing.assert_array_equal(np.array(batch.target_input), [[2, 8, 9, 10], [2, 0, 0, 0]])
    np.testing.assert_array_equal(np.array(batch.target_output), [[8, 9, 10, 3], [3, 0, 0, 0]])
    assert np.array(batch.target_lengths).tolist() == [4, 1]
    assert np.array(batch.source_lengths).tolist() == [2, 1]


def test_every_batch_is_within_the_token_budget(pairs):
    sampler = sampler_for(pairs)
    sources, targets = pairs
    for indices in sampler.batches(0):
        batch = pad_pairs([sources[i] for i in indices], [targets[i] for i in indices])
        longer = max(batch.source.shape[1], batch.target_input.shape[1])
        assert batch.source.shape[0] * longer <= MAX_TOKENS


def test_every_example_appears_exactly_once_per_epoch(pairs):
    sampler = sampler_for(pairs)
    for epoch in range(3):
        seen = np.concatenate(sampler.batches(epoch))
        np.testing.assert_array_equal(np.sort(seen), np.arange(len(pairs[0])))


def test_batches_group_similar_lengths(pairs):
    lengths = pair_lengths(*pairs)
    for indices in sampler_for(pairs).batches(0):
        assert np.ptp(lengths[indices, 0]) < 8 and np.ptp(lengths[indices, 1]) < 8


def test_same_seed_same_order_other_epoch_or_seed_other_order(pairs):
    a, b = sampler_for(pairs, seed=3), sampler_for(pairs, seed=3)
    as_lists = lambda batches: [x.tolist() for x in batches]  # noqa: E731
    assert as_lists(a.batches(0)) == as_lists(b.batches(0))
    assert as_lists(a) == as_lists(b.batches(0))  # iterating gives the planned epoch
    assert as_lists(a.batches(0)) != as_lists(a.batches(1))
    assert as_lists(a.batches(0)) != as_lists(sampler_for(pairs, seed=4).batches(0))
    unshuffled = sampler_for(pairs, shuffle=False)
    assert as_lists(unshuffled.batches(0)) == as_lists(unshuffled.batches(5))


def test_resuming_from_a_saved_position_yields_exactly_the_remaining_batches(pairs):
    reference = sampler_for(pairs, seed=1)
    expected = [x.tolist() for x in reference.batches(0) + reference.batches(1)]
    first = sampler_for(pairs, seed=1)
    taken = []
    for indices in first:
        taken.append(indices.tolist())
        if len(taken) == 5:
            break
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint stores
    assert (state["epoch"], state["index"]) == (0, 5)
    resumed = sampler_for(pairs, seed=1)
    resumed.load_state_dict(state)
    rest = [x.tolist() for x in resumed] + [x.tolist() for x in resumed]
    assert taken + rest == expected
    assert (resumed.epoch, resumed.index) == (2, 0)


def test_a_position_at_the_end_of_an_epoch_resumes_in_the_next(pairs):
    sampler = sampler_for(pairs, seed=1)
    for _ in sampler.__iter__():
        if sampler.index == len(sampler):
            state = sampler.state_dict()
    resumed = sampler_for(pairs, seed=1)
    resumed.load_state_dict(state)
    assert [x.tolist() for x in resumed] == []  # the rest of epoch 0 is nothing
    assert [x.tolist() for x in resumed] == [x.tolist() for x in sampler.batches(1)]


def test_a_state_for_other_data_or_settings_is_refused(pairs):
    state = sampler_for(pairs, seed=1).state_dict()
    with pytest.raises(ValueError, match="saved with seed=1, this batching has seed=2"):
        sampler_for(pairs, seed=2).load_state_dict(state)
    other = BatchSampler(pair_lengths(pairs[0][:-1], pairs[1][:-1]), MAX_TOKENS, seed=1)
    with pytest.raises(ValueError, match="lengths_crc32"):
        other.load_state_dict(state)


@pytest.mark.parametrize("options", [{"multiple": 8}, {"boundaries": [16, 32, 48, 80]}])
def test_distinct_shapes_are_bounded_and_reported_exactly(pairs, options):
    sampler = sampler_for(pairs, **options)
    sources, targets = pairs
    seen, per_epoch = set(), []
    for epoch in range(3):
        for indices in sampler.batches(epoch):
            batch = pad_pairs(
                [sources[i] for i in indices], [targets[i] for i in indices],
                multiple=options.get("multiple", 8), boundaries=options.get("boundaries"),
            )
            seen.add((batch.source.shape[0], batch.source.shape[1], batch.target_input.shape[1]))
        per_epoch.append(len(seen))
    assert seen == sampler.shapes()
    assert per_epoch[0] == per_epoch[-1]  # later epochs add no shapes
    padded_values = {n for shape in seen for n in shape[1:]}
    allowed = options.get("boundaries") or range(8, 80, 8)
    assert padded_values <= set(allowed)
    buckets = {shape[1:] for shape in seen}
    assert len(seen) <= 2 * len(buckets)


def test_shape_count_depends_on_length_range_not_corpus_size():
    rng = np.random.default_rng(3)
    source = rng.integers(1, 61, size=20000)
    lengths = np.stack([source, np.clip(source + rng.integers(-5, 8, size=20000), 1, 70)], axis=1)
    sampler = BatchSampler(lengths, 2048, seed=0)
    # Sources pad to 8..64 (8 values), targets to 8..72 (9): at most 2 shapes per bucket.
    assert len(sampler.shapes()) <= 2 * 8 * 9
    assert len(sampler) > 4 * len(sampler.shapes())


def test_too_long_example_is_named():
    with pytest.raises(ValueError, match="example 1 pads to length 24, more than max_tokens=16"):
        BatchSampler([3, 20, 5], 16)


def test_max_batch_size_caps_batches():
    sampler = BatchSampler([3] * 20, 1000, max_batch_size=6, seed=0)
    assert sorted(len(b) for b in sampler.batches(0)) == [2, 6, 6, 6]
    assert sampler.shapes() == {(6, 8), (2, 8)}


def test_stream_batches_continue_each_stream():
    tokens = np.random.default_rng(0).integers(0, 50, size=1003)
    batcher = StreamBatcher(tokens, batch_size=4, seq_len=7)
    per_stream = len(tokens) // 4
    assert len(batcher) == (per_stream - 1) // 7
    batches = [(np.array(x), np.array(y)) for x, y in batcher]
    assert all(x.shape == (4, 7) and y.shape == (4, 7) for x, y in batches)
    inputs = np.concatenate([x for x, _ in batches], axis=1)
    targets = np.concatenate([y for _, y in batches], axis=1)
    steps = inputs.shape[1]
    for b in range(4):
        stream = tokens[b * per_stream : (b + 1) * per_stream]
        np.testing.assert_array_equal(inputs[b], stream[:steps])
        np.testing.assert_array_equal(targets[b], stream[1 : steps + 1])


def test_stream_batches_keep_the_last_short_chunk_on_request():
    batcher = StreamBatcher(np.arange(2 * 11), batch_size=2, seq_len=4, drop_last=False)
    shapes = [tuple(x.shape) for x, _ in batcher]
    assert shapes == [(2, 4), (2, 4), (2, 2)]
    last_x, last_y = list(batcher)[-1]
    np.testing.assert_array_equal(np.array(last_x), [[8, 9], [19, 20]])
    np.testing.assert_array_equal(np.array(last_y), [[9, 10], [20, 21]])


def test_stream_batcher_resumes_mid_epoch():
    tokens = np.arange(500)
    full = [np.array(x).tolist() for x, _ in StreamBatcher(tokens, 3, 10)]
    first = StreamBatcher(tokens, 3, 10)
    iterator = iter(first)
    head = [np.array(next(iterator)[0]).tolist() for _ in range(4)]
    resumed = StreamBatcher(tokens, 3, 10)
    resumed.load_state_dict(first.state_dict())
    assert head + [np.array(x).tolist() for x, _ in resumed] == full
    with pytest.raises(ValueError, match="saved with seq_len=10"):
        StreamBatcher(tokens, 3, 12).load_state_dict(first.state_dict())


def test_stream_too_short_for_one_batch():
    with pytest.raises(ValueError, match="needs 44 tokens"):
        StreamBatcher(np.arange(40), batch_size=4, seq_len=10)


def test_pad_frames_pads_feature_sequences_with_zeros_to_the_bucket_length():
    from mlxseq.data import pad_frames

    sequences = [np.ones((3, 2), np.float32), np.full((5, 2), 2.0, np.float32)]
    frames, lengths = pad_frames(sequences, boundaries=[4, 8])
    assert frames.shape == (2, 8, 2) and lengths.tolist() == [3, 5]
    np.testing.assert_array_equal(np.array(frames)[0, :3], 1.0)
    assert not np.array(frames)[0, 3:].any() and not np.array(frames)[1, 5:].any()
    assert pad_frames(sequences, multiple=16)[0].shape == (2, 16, 2)
    with pytest.raises(ValueError, match="sequence 1 of the batch is empty"):
        pad_frames([np.ones((2, 2)), np.zeros((0, 2))])
    with pytest.raises(ValueError, match="exceeds the largest bucket boundary 4"):
        pad_frames(sequences, boundaries=[4])
