"""Generation with a language-model folder: memorised text, seeds, stop strings, streaming, CLI."""

from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import pytest
from mlx.utils import tree_flatten
from typer.testing import CliRunner

from mlxseq.checkpoint import save_model
from mlxseq.cli import app
from mlxseq.data import CharTokenizer
from mlxseq.pipelines.generator import GenerationOptions, Generator, generate
from mlxseq.losses import label_smoothed_cross_entropy
from mlxseq.models.language_model import LanguageModel, ModelArgs

TEXT = "to be, or not to be: that is the question. "
runner = CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny character LSTM that memorises TEXT (repeated), saved as a model folder."""
    tokenizer = CharTokenizer.build(TEXT)
    ids = tokenizer.encode(TEXT * 3)
    mx.random.seed(0)
    args = ModelArgs(vocab_size=tokenizer.vocab_size, embed_size=16, hidden_size=64, num_layers=1, dropout=0.0)
    model = LanguageModel(args)
    optimizer = optim.Adam(learning_rate=2e-2)

    def loss_fn(model, x, y):
        total, count = label_smoothed_cross_entropy(model(x)[0], y, pad_id=-1)
        return total / count

    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y):
        loss, grads = nn.value_and_grad(model, loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return loss

    x = mx.array([[args.bos_id] + ids[:-1]])
    y = mx.array([ids])
    for _ in range(250):
        loss = step(x, y)
        mx.eval(loss, state)
    assert loss.item() < 0.05
    path = tmp_path_factory.mktemp("lm") / "model"
    save_model(path, model, "lm", args)
    tokenizer.save(path)
    return path


def test_greedy_reproduces_the_memorised_text(folder):
    generator = Generator.load(folder)
    assert generator.generate("to be, or ", GenerationOptions(max_tokens=30))[0] == "not to be: that is the questio"
    assert generate("", model=generator, max_tokens=12) == "to be, or no"  # empty prompt: from the start token
    # the streamed pieces add up to the same text
    assert "".join(generator.stream("to be, or ", GenerationOptions(max_tokens=30))) == "not to be: that is the questio"


def test_stop_strings_seeds_and_samples(folder):
    generator = Generator.load(folder)
    options = GenerationOptions(max_tokens=40, stop=("that",))
    assert generator.generate("to be, or ", options)[0] == "not to be: "
    assert "".join(generator.stream("to be, or ", options)) == "not to be: "
    hot = dict(max_tokens=40, temp=5.0, num_samples=3)
    a = generator.generate("t", GenerationOptions(seed=1, **hot))
    b = generator.generate("t", GenerationOptions(seed=1, **hot))
    c = generator.generate("t", GenerationOptions(seed=2, **hot))
    assert a == b and a != c and len(a) == 3
    assert generator.generate("t", GenerationOptions(max_tokens=0)) == [""]
    beams = generator.generate("to be, or ", GenerationOptions(max_tokens=8, beam_size=3, num_samples=2))
    assert beams[0] == "not to b" and len(beams) == 2


def test_repetition_penalty_changes_greedy_text(folder):
    generator = Generator.load(folder)
    plain = generator.generate("to be", GenerationOptions(max_tokens=30))[0]
    penalised = generator.generate("to be", GenerationOptions(max_tokens=30, repetition_penalty=50.0))[0]
    assert plain != penalised


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(max_tokens=-1), "max_tokens must be in \\[0, 1000000\\], got -1"),
        (dict(temp=-0.5), "temp must be a finite number >= 0"),
        (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
        (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
        (dict(top_k=-1), "top_k"),
        (dict(repetition_penalty=0.0), "penalty"),
        (dict(num_samples=0), "num_samples"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerationOptions(**kwargs)


def test_cli_generate_streams_and_checks_options(folder):
    result = runner.invoke(app, ["generate", "--model", str(folder), "--prompt", "to be, or ", "-m", "11"])
    assert result.exit_code == 0, result.output
    assert result.output == "to be, or not to be: \n"
    result = runner.invoke(app, ["generate", "--model", str(folder), "--temp", "-1"])
    assert result.exit_code == 1 and "temp must be a finite number >= 0" in result.output
    result = runner.invoke(app, ["generate", "--model", str(folder), "--prompt", "to", "--num-samples", "2",
                                 "--temp", "1", "--seed", "3", "-m", "5"])
    assert result.exit_code == 0 and result.output.count("--- sample") == 2


def test_a_long_prompt_runs_in_chunks_to_the_state_of_one_pass(folder):
    from mlxseq.pipelines import generator as generation

    generator = Generator.load(folder)
    prompt = "the quick brown fox jumps over the lazy dog " * 30  # 1,320 characters: three chunks
    ids, chunked = generator._start(prompt, 2)
    whole_state = generator.model.init_state(2)
    _, whole_state = generator.model(mx.array([ids[:-1]] * 2, dtype=mx.int32), whole_state)
    assert len(ids) - 1 > 2 * generation.PROMPT_CHUNK
    chunked, whole_state = tree_flatten(chunked), tree_flatten(whole_state)
    assert [k for k, _ in chunked] == [k for k, _ in whole_state] and chunked
    for (_, a), (_, b) in zip(chunked, whole_state):
        assert mx.allclose(a, b, atol=1e-5).item()


def test_generate_reads_its_prompt_from_standard_input_with_a_dash(folder):
    result = CliRunner().invoke(app, ["generate", "--model", str(folder), "--prompt", "-", "--max-tokens", "5"],
                                input="the quick\n")
    assert result.exit_code == 0 and result.output.startswith("the quick"), result.output
