"""One accelerator in one table: single-run, sweep and whole-spec speed (the entry of gpu.sh).

Rows: steps/s of one run of the baseline, of the two-pass layer-1 clamp (`fig5b-clamp_layer1`) and
of the Markov task (`train_speed.measure`); aggregate steps/s of sweeps of Figure 4b's members
(`sweep_speed.measure`) with the device memory in use at its peak so far (`memory_stats()`,
"n/a" where the platform has none, as on the CPU); the wall time of Figure 5b's ladder trained
end to end with `opto run` (`paper_time.run_specs`, compilation included); and the main paper's
training time estimated from the measured rates (`paper_time.programs`: every program `opto run`
would train, at the rate measured for its kind). Compilation is excluded from the rate rows.

`--reduced` runs it all at tiny scale (a CPU check that the script works, in well under a
minute on an idle machine); the default is the full scale for one GPU, about 8 minutes at most.
Each row is also appended to `--jsonl` as it is measured, so a run cut short keeps what it got.

    python benchmarks/gpu_bench.py --reduced
    python benchmarks/gpu_bench.py --jsonl /tmp/gpu.jsonl --out /tmp/gpu_runs
"""


# no `from __future__ import annotations`: the dataclasses below must build when
# tests/test_docs_examples.py loads this file without registering it in sys.modules
import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # its neighbours, as when the script runs from this folder

import paper_time  # noqa: E402
import sweep_speed  # noqa: E402  (sets optodsl's XLA flags, which apply only on a CPU, before JAX starts)
import train_speed  # noqa: E402

import jax  # noqa: E402

BASELINE = "specs/examples/baseline.opto"
TWO_PASS = ("specs/paper/fig5b.opto", "fig5b-clamp_layer1")
MARKOV = "specs/tasks/markov.opto"


@dataclass(frozen=True)
class Scale:
    """How much of each measurement to take."""

    chunks: int = 10            # timed chunks of one run
    every: int = 5000           # sequences per chunk (the evaluation interval)
    eval_sequences: int = 1000  # per evaluation set
    markov_chunks: int = 3
    markov_every: int = 6400
    sweep_sizes: tuple[int, ...] = (8, 64, 512)
    sweep_chunks: int = 4
    ladder: str = "fig5b"       # the paper spec trained end to end (specs/paper/<ladder>.opto)
    ladder_sets: tuple[str, ...] = ()
    ladder_timeout_s: float = 330.0
    budget_s: float = 450.0     # the ladder is stopped when the whole run reaches this
    name: str = "full"


FULL = Scale()
REDUCED = Scale(chunks=2, every=320, eval_sequences=32, markov_chunks=1, markov_every=320, sweep_sizes=(2, 4, 8),
                sweep_chunks=1, ladder_sets=("train.sequences=320", "eval.every=320", "eval.sequences=32"),
                ladder_timeout_s=1800.0, budget_s=3600.0, name="reduced")  # a CPU check: no time limit to speak of


@dataclass
class Table:
    """The rows measured so far, each also written to `jsonl` as it comes."""

    jsonl: Path | None = None
    rows: list[dict] = field(default_factory=list)
    since: float = field(default_factory=time.perf_counter)

    def add(self, what: str, value: str, unit: str, note: str = "", **extra) -> None:
        now = time.perf_counter()
        row = {"what": what, "value": value, "unit": unit, "note": note, "took_s": round(now - self.since, 1), **extra}
        self.since = now
        self.rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        if self.jsonl is not None:
            with self.jsonl.open("a") as f:
                f.write(json.dumps(row) + "\n")

    def render(self) -> str:
        widths = [max(len(r[k]) for r in self.rows + [{"what": "measurement", "value": "value", "unit": "unit", "note": ""}])
                  for k in ("what", "value", "unit")]
        lines = [f"| {'measurement':<{widths[0]}} | {'value':>{widths[1]}} | {'unit':<{widths[2]}} | note |",
                 f"|{'-' * (widths[0] + 2)}|{'-' * (widths[1] + 2)}|{'-' * (widths[2] + 2)}|------|"]
        for r in self.rows:
            lines.append(f"| {r['what']:<{widths[0]}} | {r['value']:>{widths[1]}} | {r['unit']:<{widths[2]}} | {r['note']} |")
        return "\n".join(lines)


def memory_in_use() -> str:
    """Peak device memory so far, in MiB, where the platform reports it ("n/a" on the CPU)."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001  (platforms without the call raise)
        stats = None
    if not stats:
        return "n/a"
    used = stats.get("peak_bytes_in_use", stats.get("bytes_in_use"))
    total = stats.get("bytes_limit")
    return f"{used / 2**20:.0f} MiB" + (f" of {total / 2**20:.0f}" if total else "")


def out_of_memory(err: Exception) -> bool:
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def measure_sweeps(scale: Scale, table: Table) -> dict[int, float]:
    """Aggregate steps/s per sweep size; a size that does not fit is reported and halved once."""
    rates: dict[int, float] = {}
    for size in scale.sweep_sizes:
        for attempt in (size, size // 2):
            try:
                r = sweep_speed.measure(attempt, scale.sweep_chunks, scale.every, scale.eval_sequences)
            except Exception as err:  # noqa: BLE001
                if not out_of_memory(err) or attempt != size or attempt // 2 in rates or attempt < 2:
                    raise
                table.add(f"sweep of {attempt} runs", "OOM", "aggregate steps/s", "does not fit; trying half")
                continue
            rates[attempt] = r["aggregate_steps_per_s"]
            table.add(f"sweep of {attempt} runs", f"{r['aggregate_steps_per_s']:.1f}", "aggregate steps/s",
                      f"memory {memory_in_use()} (peak so far); compile+first chunk {r['compile_plus_first_chunk_s']} s",
                      runs=attempt, memory=memory_in_use())
            break
    return rates


def per_run_rate(runs: int, passes: int, single: dict[int, float], sweeps: dict[int, float]) -> float:
    """Steps/s of each run of a program of `runs` runs: a single run's rate of its pass count, or the
    per-run rate of the measured sweep nearest in size."""
    if runs == 1 or not sweeps:
        return single[passes] / (1 if runs == 1 else runs)
    nearest = min(sweeps, key=lambda s: abs(s - runs))
    return sweeps[nearest] / nearest


def estimate(names: list[str], sets: tuple[str, ...], single: dict[int, float], sweeps: dict[int, float]) -> tuple[float, int]:
    """(seconds of training, programs) for the specs at the measured rates, compilation excluded."""
    progs = paper_time.programs(names, list(sets))
    return sum(p["steps"] / per_run_rate(p["runs"], p["passes"], single, sweeps) for p in progs), len(progs)


def run(scale: Scale, out: Path, jsonl: Path | None = None) -> Table:
    """Measure every row at `scale`, training the ladder's run directories under `out`."""
    if (out / scale.ladder).exists():
        raise SystemExit(f"{out / scale.ladder} exists: the ladder's wall time needs a fresh folder (opto run would resume)")
    table = Table(jsonl)
    device = jax.devices()[0]
    table.add("device", f"{device.platform}", "", f"{device.device_kind}; {jax.local_device_count()} local devices; "
              f"jax {jax.__version__}; python {platform.python_version()}; scale {scale.name}")
    t0 = time.perf_counter()
    base = train_speed.measure(BASELINE, scale.chunks, scale.every, eval_sequences=scale.eval_sequences)
    table.add("one run, baseline", f"{base['steps_per_s']:.1f}", "steps/s",
              f"batch 32, evaluation every {scale.every} sequences; compile+first chunk {base['first_chunk_s (compile + 1 chunk)']} s")
    two = train_speed.measure(TWO_PASS[0], scale.chunks, scale.every, TWO_PASS[1], eval_sequences=scale.eval_sequences)
    table.add("one run, two-pass clamp", f"{two['steps_per_s']:.1f}", "steps/s", f"{TWO_PASS[1]} (clamp L1.resid_out, two passes)")
    markov = train_speed.measure(MARKOV, scale.markov_chunks, scale.markov_every, eval_sequences=scale.eval_sequences)
    table.add("one run, Markov task", f"{markov['steps_per_s']:.1f}", "steps/s",
              f"100 tokens; evaluation every {scale.markov_every} sequences")
    sweeps = measure_sweeps(scale, table)
    single = {1: base["steps_per_s"], 2: two["steps_per_s"]}
    train_s, _ = estimate([scale.ladder], scale.ladder_sets, single, sweeps)
    limit = max(30.0, min(scale.ladder_timeout_s, scale.budget_s - (time.perf_counter() - t0)))
    try:
        ladder = paper_time.run_specs([scale.ladder], out / scale.ladder, list(scale.ladder_sets), timeout=limit)
        wall = ladder["wall_s"]
        table.add(f"paper spec {scale.ladder}, end to end", f"{wall:.1f}", "s wall",
                  f"{ladder['runs']} runs{' at ' + ', '.join(scale.ladder_sets) if scale.ladder_sets else ''}, `opto run` "
                  f"with compilation and the spec's evaluation; {train_s:.1f} s of it training at the rates above", runs=ladder["runs"])
    except subprocess.TimeoutExpired:
        wall = None
        table.add(f"paper spec {scale.ladder}, end to end", f"> {limit:.0f}", "s wall", "stopped at the time limit")
    paper_s, programs = estimate(paper_time.MAIN, (), single, sweeps)
    note = f"{programs} programs at the paper's lengths at the rates above, compilation and evaluation excluded"
    if wall is not None and not scale.ladder_sets:
        note += f"; {paper_s * wall / train_s / 60:.2f} min scaled by the ladder's wall time over its estimate"
    table.add("main paper (Figures 3-6), estimated", f"{paper_s / 60:.2f}", "min training", note)
    table.add("this benchmark", f"{time.perf_counter() - t0:.0f}", "s wall", "")
    return table


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_examples.py parses every call the docs show with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="tiny scale: a CPU check in under a minute")
    parser.add_argument("--out", type=Path, default=None, help="a fresh folder for the ladder's run directories")
    parser.add_argument("--jsonl", type=Path, default=None, help="append each row here as it is measured")
    return parser


def main() -> None:
    args = parser().parse_args()
    scale = REDUCED if args.reduced else FULL
    with tempfile.TemporaryDirectory() as tmp:
        table = run(scale, args.out or Path(tmp), args.jsonl)
    print(table.render())


if __name__ == "__main__":
    main()
