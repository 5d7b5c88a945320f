"""Optional TensorBoard logging of metrics records, one event directory per sweep member.

TensorBoard is an extra (`pip install "optodsl[tensorboard]"`), so tensorboardX is imported
only when a logger is made; metrics.jsonl stays the record of a run, this is a view of it.
"""

from __future__ import annotations

import itertools
import numbers
import os
from pathlib import Path

from ..errors import DataError
from ..files import make_dir

SKIPPED = frozenset({"sequences", "step"})
_FILES = itertools.count()


def writer_class(where: str | Path = "--tensorboard"):
    """tensorboardX's SummaryWriter, or a DataError at `where` saying how to install it; `opto run
    --tensorboard` asks this before it creates any run directory, so a missing extra leaves nothing behind."""
    try:
        import tensorboardX
    except ImportError:
        raise DataError(where, "TensorBoard logging needs tensorboardX",
                        expected='pip install "optodsl[tensorboard]"') from None
    return tensorboardX.SummaryWriter


class TensorBoardLogger:
    """Write every numeric entry of a metrics record as a scalar, at step = training sequences.

    The x axis counts sequences, as the paper's plots and `metrics.jsonl` do. Each member's
    writer opens at its first record, purging events at or after that step, so a resumed run
    replaces the points it re-evaluates instead of drawing them twice.
    """

    def __init__(self, log_dirs: list[Path]):
        self._writer_class = writer_class(log_dirs[0] if log_dirs else "--tensorboard")
        self.log_dirs = [Path(d) for d in log_dirs]
        self._writers: dict[int, object] = {}

    def _writer(self, member: int, step: int):
        writer = self._writers.get(member)
        if writer is None:
            path = make_dir(self.log_dirs[member])
            # tensorboardX names files by the second and opens them with "wb": a suffix keeps a
            # writer reopened within the same second from truncating the previous file.
            suffix = f".{os.getpid()}.{next(_FILES)}"
            writer = self._writer_class(logdir=str(path), purge_step=step, flush_secs=30, filename_suffix=suffix)
            self._writers[member] = writer
        return writer

    def log(self, member: int, record: dict) -> None:
        """Write the numeric entries of one record for sweep member `member` (None and text skipped)."""
        step = int(record["sequences"])
        scalars = {key: float(value) for key, value in record.items()
                   if key not in SKIPPED and isinstance(value, numbers.Real) and not isinstance(value, bool)}
        if not scalars:
            return
        writer = self._writer(member, step)
        for key, value in scalars.items():
            writer.add_scalar(key, value, step)

    def flush(self) -> None:
        """Write what is buffered to the event files."""
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        """Flush and close every event file; later records open new ones."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
