"""Write a connected-digit list (utterances drawn from FSDD recordings of one split) as a TSV.

The shipped test list, ``configs/fsdd_digits_test.tsv``, is 1,000 utterances of 1-7 digits
from the official test recordings (index 0-4), made with::

    python tools/make_digit_list.py --recordings ../shared/data/fsdd/recordings.tar.gz \
        --split test --count 1000 --seed 20221 configs/fsdd_digits_test.tsv

The list holds names and numbers only; ``mlxseq evaluate --recordings`` renders the audio.

``--isolated-tsvs`` instead writes ``isolated_{train,valid,test}.tsv`` (``path<TAB>digit``, paths
relative to the recordings' parent folder) for ``configs/fsdd_isolated.yaml``, a classifier over
log-mel frames; it needs the recordings extracted (``tar -xzf recordings.tar.gz``)::

    python tools/make_digit_list.py --recordings data/fsdd/recordings --isolated-tsvs
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlxseq.speech.digits import SynthesisArgs, load_recordings, sample_utterances, split_of, write_digit_list
from mlxseq.system.files import write_text


def write_isolated_tsvs(recordings: Path) -> None:
    """``isolated_{split}.tsv`` beside ``recordings`` (a folder): every recording of the split and its digit."""
    if not recordings.is_dir():
        raise SystemExit(f"{recordings}: give the extracted recordings folder (tar -xzf recordings.tar.gz)")
    names = sorted(load_recordings(recordings))
    for split in ("train", "valid", "test"):
        rows = [f"{recordings.name}/{n}\t{n[0]}\n" for n in names if split_of(n) == split]
        write_text(recordings.parent / f"isolated_{split}.tsv", "".join(rows))
        print(f"{recordings.parent / f'isolated_{split}.tsv'}: {len(rows)} recordings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="the digit list to write")
    parser.add_argument("--isolated-tsvs", action="store_true",
                        help="write isolated_{train,valid,test}.tsv beside the recordings folder instead")
    parser.add_argument("--recordings", required=True, help="FSDD recordings: a folder or recordings.tar.gz")
    parser.add_argument("--split", choices=("train", "valid", "test"), default="test")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20221)
    parser.add_argument("--min-digits", type=int, default=1)
    parser.add_argument("--max-digits", type=int, default=7)
    args = parser.parse_args()
    if args.isolated_tsvs:
        write_isolated_tsvs(Path(args.recordings))
        return
    if not args.out:
        parser.error("give the list to write, or --isolated-tsvs")
    names = [name for name in load_recordings(args.recordings) if split_of(name) == args.split]
    utterances = sample_utterances(names, args.count, args.seed, SynthesisArgs(args.min_digits, args.max_digits))
    write_digit_list(args.out, utterances)
    digits = sum(len(u.recordings) for u in utterances)
    print(f"{args.out}: {len(utterances)} utterances, {digits} digits, from {len(names)} {args.split} recordings")


if __name__ == "__main__":
    main()
