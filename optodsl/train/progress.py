"""Training progress for a person watching: a rich bar on a terminal, plain lines elsewhere.

Off a terminal (output to a file or a pipe) a line is printed about every 5% of the run, so a
log shows how far a run got and how fast, without the bar's control characters.
"""

from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    """A duration as `1h02m` or `3m05s`."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """`mode` is "bar" (rich, for a terminal), "lines" (a plain line every ~5%) or "off";
    None picks the bar on a terminal and lines otherwise."""

    STRIDE = 0.05

    def __init__(self, total: int, mode: str | None, label: str = "sequences", start: int = 0, stream=None):
        self.stream = stream or sys.stdout
        if mode is None:
            mode = "bar" if self.stream.isatty() else "lines"
        self.mode, self.total, self.label = mode, max(total, 1), label
        self.start, self.t0 = start, time.perf_counter()
        self.next_line = start + self.STRIDE * self.total
        self.bar = None
        if mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self.bar = Bar(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                           TimeRemainingColumn(), transient=False, console=Console(file=self.stream))
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
            self.bar.start()

    def update(self, seqs: int, record: dict) -> None:
        """Report `seqs` sequences trained, with the latest metrics record."""
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rate = (seqs - self.start) / elapsed
        info = f"loss {record.get('train/loss', float('nan')):.4f}  acc {record.get('train/accuracy', float('nan')):.3f}  {rate:,.0f} seq/s"
        if self.bar is not None:
            self.bar.update(self.task, completed=seqs, info=info)
        elif self.mode == "lines" and (seqs >= self.next_line or seqs >= self.total):
            eta = (self.total - seqs) / rate if rate > 0 else float("nan")
            print(f"{self.label} {seqs:,}/{self.total:,} ({100 * seqs / self.total:.0f}%)  {info}  "
                  f"ETA {_clock(eta) if eta == eta else '?'}", file=self.stream, flush=True)
            while self.next_line <= seqs:
                self.next_line += self.STRIDE * self.total

    def close(self) -> None:
        """Stop the bar (leaving its last state on the terminal); plain lines need nothing."""
        if self.bar is not None:
            self.bar.stop()


def runs_label(names: list[str], program: int, programs: int) -> str:
    """What progress lines call one program's runs in an `opto run` of several: `[a, b]`, or
    `[a, b, +6 more]` for many, after `program 2/3` when several programs train in turn."""
    shown = ", ".join(names[:2]) + (f", +{len(names) - 2} more" if len(names) > 2 else "")
    return (f"program {program + 1}/{programs} " if programs > 1 else "") + f"[{shown}]"
