"""Graceful stop: SIGINT / SIGTERM ask the training loop to save and return."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by a stop signal; the training loop polls it after every step.

    A handler only sets a flag: raising from it (Python's default for SIGINT) could interrupt
    the loop between the optimizer update and the step counter, or in the middle of a save.
    A second signal restores the previous handlers, so pressing Ctrl-C twice still kills a
    loop stuck somewhere that never polls.

    Attributes:
        signum: The first stop signal received, or None.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            self.restore()
        self.signum = signum

    def install(self) -> None:
        """Install the handlers (only the main thread may; elsewhere this does nothing)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Put the previous handlers back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Catch SIGINT / SIGTERM as a :class:`StopRequest` for the duration of the block."""
    request = StopRequest()
    request.install()
    try:
        yield request
    finally:
        request.restore()
