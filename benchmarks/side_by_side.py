"""Benchmarks side by side: run several benchmark commands in turn, round after round, and report
each one's median steps/s and its ratio to the first command's median.

On a noisy machine a single sitting can be off by 1.5x; running the contenders alternately in the
same minutes and comparing medians of ratios is what makes a comparison fair. Each command must print
one JSON line with a `steps_per_s` field (as `train_speed.py` and `plain_loop.py` do).

    python benchmarks/side_by_side.py --rounds 3 \\
        plain="python benchmarks/plain_loop.py --chunks 2" \\
        markov="python benchmarks/train_speed.py --spec specs/tasks/markov.opto --chunks 2 --every 6400"
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys


def steps_per_s(command: str) -> float:
    """Run one benchmark command and read `steps_per_s` from the last JSON line it prints."""
    out = subprocess.run(shlex.split(command), capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["steps_per_s"])


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_examples.py parses every call the docs show with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commands", nargs="+", help="NAME=COMMAND, the first being the yardstick")
    parser.add_argument("--rounds", type=int, default=3, help="sittings of every command, alternating")
    return parser


def main() -> None:
    args = parser().parse_args()
    named = [c.split("=", 1) for c in args.commands]
    seen: dict[str, list[float]] = {name: [] for name, _ in named}
    for r in range(args.rounds):
        order = named if r % 2 == 0 else named[::-1]  # alternate which command goes first
        for name, command in order:
            seen[name].append(steps_per_s(command))
            print(json.dumps({"round": r + 1, "name": name, "steps_per_s": seen[name][-1]}), file=sys.stderr)
    first = statistics.median(seen[named[0][0]])
    for name, values in seen.items():
        median = statistics.median(values)
        print(json.dumps({"name": name, "median_steps_per_s": round(median, 1), "ratio_to_first": round(median / first, 2),
                          "sittings": values}))


if __name__ == "__main__":
    main()
