"""Ctrl-C and SIGTERM: a loop stops at its next safe point instead of wherever the signal lands.

SLURM, Kubernetes and torchrun send SIGTERM before they kill a process; it is handled as the first Ctrl-C is:
the loop finishes its step or batch, saves, and the command exits 128 + the signal's number (130 for Ctrl-C,
143 for SIGTERM). A second Ctrl-C stops at once (the user insists). A repeated SIGTERM does not: a scheduler may
send it to the whole job and torchrun again to each process, and a SIGKILL follows after the grace period anyway.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Any, Iterator

from datagen.common.console import console

_STOPPING = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A stop asked for by a signal; the CLI prints its message and exits 128 + the signal's number.

    A BaseException, as KeyboardInterrupt is, so `except Exception` handlers let it pass; not a KeyboardInterrupt,
    which typer turns into a silent exit 130 whatever the signal was.
    """

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"stopped at once by {signal.Signals(signum).name}; work since the last save is lost")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """While entered, SIGINT and SIGTERM set `signum` for the loop to poll between steps.

    Until `armed` (nothing worth saving exists yet) a signal raises Interrupted at once. `saving` says, after the
    signal's name, what the loop will do before it stops (e.g. "saving a checkpoint after this step").
    """

    def __init__(self, saving: str):
        self.saving = saving
        self.armed = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.armed or (self.requested and signum == signal.SIGINT):
            raise Interrupted(signum)
        if self.requested:
            return  # SIGTERM again (or after Ctrl-C): the stop is under way
        self.signum = signum
        again = " (Ctrl-C again to abort)" if signum == signal.SIGINT else ""
        name = "interrupt" if signum == signal.SIGINT else signal.Signals(signum).name
        console.print(f"[yellow]{name}: {self.saving}{again}")

    def __enter__(self) -> StopRequest:
        for signum in _STOPPING:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: the signals keep their usual behaviour
                break
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)  # None: a handler set from C
        self._previous.clear()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM outside any loop raises Interrupted, so `finally` blocks run (locks are released) and the exit is 143,
    where Python's default would end the process on the spot."""
    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
