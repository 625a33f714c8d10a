"""A stop request (SIGINT/SIGTERM) that long phases honour between batches, not only between steps.

The signal handler only sets a flag; the sampling engines call :func:`check` between decode steps
and raise :class:`StopRequested`, so initialisation, evaluation and a step's sampling end within one
forward pass. The trainer catches it, writes a checkpoint if training had started, and stops with a
one-line message. A second signal (after the first has had a second to be seen) interrupts at once.
"""

from __future__ import annotations

import signal
import threading
import time


class StopRequested(Exception):
    """Raised inside a long phase once a stop was requested."""


_REQUEST: list[str] = []  # the signal's name, once one arrived


def request(name: str) -> None:
    if not _REQUEST:
        _REQUEST.append(name)


def requested() -> str | None:
    return _REQUEST[0] if _REQUEST else None


def check() -> None:
    """Raise :class:`StopRequested` if a stop was requested (cheap: call it between batches)."""
    if _REQUEST:
        raise StopRequested(_REQUEST[0])


def clear() -> None:
    _REQUEST.clear()


class StopOnSignal:
    """Turn SIGINT/SIGTERM into a stop request for the duration of a ``with`` block."""

    def __init__(self):
        self._first = 0.0
        self._previous = {}

    @property
    def requested(self) -> str | None:
        return requested()

    def __enter__(self):
        clear()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if requested():
            if time.monotonic() - self._first < 1.0:  # the same Ctrl-C, forwarded again by the launcher
                return
            raise KeyboardInterrupt  # a second signal: stop now
        request(signal.Signals(signum).name)
        self._first = time.monotonic()

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        clear()
        return False
