"""What a run directory's files say about its run: the one rule for a run's status.

`summary.json` is written when a run stops in a known way: `complete`, `interrupted` (a signal;
it names the checkpoint a rerun resumes from), or `failed: ...`. A run with no summary is either
still running or was killed (SIGKILL, a crash of the machine); a process cannot tell which from
the files alone, so the status says both. Rows of `metrics.jsonl` past the checkpoint are dropped
when the run resumes.
"""

from __future__ import annotations

import json
from pathlib import Path

SUMMARY, POINTER, METRICS = "summary.json", "checkpoint.json", "metrics.jsonl"

UNFINISHED = "running or interrupted"
"""The status of a run that has trained but has no summary: in progress, or killed."""


def status(run_dir: Path, summary: dict | None) -> tuple[str, int]:
    """The run's status and the sequences it has safely trained (its summary's, else its checkpoint's)."""
    run_dir = Path(run_dir)
    if summary is not None and isinstance(summary.get("status"), str):
        return summary["status"], int(summary.get("sequences", 0))
    if (run_dir / POINTER).is_file():
        try:
            sequences = int(json.loads((run_dir / POINTER).read_text())["sequences"])
        except (ValueError, KeyError, TypeError):
            return f"{UNFINISHED} (its {POINTER} is unreadable)", 0
        return f"{UNFINISHED} (rerun to resume)", sequences
    metrics = run_dir / METRICS
    if metrics.is_file() and metrics.stat().st_size > 0:
        return f"{UNFINISHED} before its first checkpoint (rerun to start again)", 0
    return "not started", 0
