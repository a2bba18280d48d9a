"""How a launch stops on a signal: SIGTERM (SLURM and Kubernetes send it before a kill) and SIGHUP (a closed
terminal) take the path of Ctrl-C, in which Tune stops the trials and checkpoints are kept; a second one
stops at once (docs/reliability.md, "Signals")."""
from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator

SIGNALLED: list[int] = []   # the SIGTERM or SIGHUP that stopped this process, if one did (Ctrl-C: none)


def _like_ctrl_c(signum: int, frame) -> None:
    if not SIGNALLED:
        SIGNALLED.append(signum)
    handler = signal.getsignal(signal.SIGINT)   # Tune's while it runs (a graceful stop), else Python's
    if callable(handler) and handler is not _like_ctrl_c:
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def stop_like_ctrl_c() -> None:
    """From here on SIGTERM and SIGHUP stop this process as Ctrl-C does. ray.init sets its own SIGTERM
    handler (sys.exit), so rdsweep.sweep.launch puts this one back after it."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _like_ctrl_c)


def ignore_further() -> None:
    """The process ends on a stop that has done its work, so the stops after it are ignored: one that landed in
    Ray's shutdown or the interpreter's exit killed the launch by the signal (exit −2 where 130 was due, once
    in CI; Python's exit puts back the default action of the signals it handled), or raised a
    KeyboardInterrupt outside any handler."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def stopped_by() -> int:
    """The signal that stopped this process: SIGINT unless a SIGTERM or SIGHUP did."""
    return SIGNALLED[0] if SIGNALLED else signal.SIGINT


@contextmanager
def deferred() -> Iterator[list[int]]:
    """A stop (Ctrl-C, SIGTERM, SIGHUP) that lands inside the block waits until the block is done, and a
    second one goes through at once. For Ray's import and ray.init: a KeyboardInterrupt raised inside an
    extension module's import or a half-made Ray core worker can crash the interpreter's exit (a segfault
    instead of 129 or 143). Yields the list of the stops waiting (for a caller that must know)."""
    signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    handlers = {s: signal.getsignal(s) for s in signums}
    waiting: list[int] = []

    def wait(signum: int, frame) -> None:
        if waiting and callable(handlers[signum]):
            handlers[signum](signum, frame)
        waiting.append(signum)

    for signum in signums:
        if callable(handlers[signum]):
            signal.signal(signum, wait)
    try:
        yield waiting
    finally:
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
    if waiting:
        handlers[waiting[0]](waiting[0], None)
