"""Ctrl-C and SIGTERM that stop a long loop at a step boundary.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be, which may be deep
inside a library call that catches it late or not at all. Inside :class:`StepInterrupts` a
signal only sets a flag; the loop calls :meth:`StepInterrupts.check` between steps, which
raises ``KeyboardInterrupt`` (SIGINT) or :class:`Terminated` (SIGTERM) there, at a point where
the loop's state is consistent. A second signal while one is pending raises at once, and one
noted after the last check is raised when the context ends.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every temporary output is removed on the way out."""


def raise_for(signum: int) -> None:
    """Raise what ``signum`` means to a command: ``Terminated`` or ``KeyboardInterrupt``."""
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


class StepInterrupts:
    """A context in which SIGINT and SIGTERM are noted, and raised by :meth:`check`.

    Outside the main thread (where signal handlers cannot be set) it does nothing: the
    process's own handlers stay in force.
    """

    def __init__(self) -> None:
        self.pending: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StepInterrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()
        if kind is None:  # a signal noted after the last check still stops the command
            self.check()

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.pending is not None:  # asked twice: stop now
            raise_for(signum)
        self.pending = signum

    def check(self) -> None:
        """Raise the pending signal's exception, if a signal arrived."""
        if self.pending is not None:
            raise_for(self.pending)
