"""Write a connected-digit list (utterances drawn from FSDD recordings of one split) as a TSV.

The shipped test list, ``configs/fsdd_digits_test.tsv``, is 1,000 utterances of 1-7 digits
from the official test recordings (index 0-4), made with::

    python tools/make_digit_list.py --recordings ../shared/data/fsdd/recordings.tar.gz \
        --split test --count 1000 --seed 20221 configs/fsdd_digits_test.tsv

The list holds names and numbers only; ``mlxseq evaluate --recordings`` renders the audio.
"""

from __future__ import annotations

import argparse

from mlxseq.speech.digits import SynthesisArgs, load_recordings, sample_utterances, split_of, write_digit_list


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the TSV to write")
    parser.add_argument("--recordings", required=True, help="FSDD recordings: a folder or recordings.tar.gz")
    parser.add_argument("--split", choices=("train", "valid", "test"), default="test")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20221)
    parser.add_argument("--min-digits", type=int, default=1)
    parser.add_argument("--max-digits", type=int, default=7)
    args = parser.parse_args()
    names = [name for name in load_recordings(args.recordings) if split_of(name) == args.split]
    utterances = sample_utterances(names, args.count, args.seed, SynthesisArgs(args.min_digits, args.max_digits))
    write_digit_list(args.out, utterances)
    digits = sum(len(u.recordings) for u in utterances)
    print(f"{args.out}: {len(utterances)} utterances, {digits} digits, from {len(names)} {args.split} recordings")


if __name__ == "__main__":
    main()
