"""SIGINT and SIGTERM as requests to stop at the next safe point, not as a crash mid-write.

While a `StopRequests` is active, the first SIGINT or SIGTERM only records itself; the trainer
looks at `received` after each fused chunk, checkpoints there and stops. A second signal of
either kind gives up waiting and raises `StopNow` (a KeyboardInterrupt that remembers the
signal, so the command exits with that signal's own code); the run still resumes from its last
checkpoint. Outside the main thread signals cannot be caught, and nothing changes.
"""

from __future__ import annotations

import signal
import threading

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""The shell's convention for a process ended by a signal: 128 + the signal's number."""


class StopNow(KeyboardInterrupt):
    """A second stop signal: stop at once, without a new checkpoint; `signum` is that signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def exit_code(stop: BaseException) -> int:
    """The exit status of a command stopped by `stop`: 128 + its signal's number (a plain
    KeyboardInterrupt is Ctrl-C, SIGINT)."""
    return EXIT_CODES.get(getattr(stop, "signum", signal.SIGINT), 130)


class StopRequests:
    """A context manager that turns the first stop signal into a flag (`received`)."""

    def __init__(self):
        self.received: int | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise StopNow(signum)
        self.received = signum

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for sig in EXIT_CODES:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
