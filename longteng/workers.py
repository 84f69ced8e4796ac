"""Worker processes that never outlive the process that started them.

A ``kill -9`` of ``longteng score`` gives its decode workers no chance to be told, and with
the forkserver start method their parent is the forkserver, not the command, so
``PR_SET_PDEATHSIG`` alone would not reach them. Each worker therefore watches the command's
own pid (a pidfd where Linux has one, else a poll) and exits as soon as it is gone; the
forkserver and multiprocessing's resource tracker exit on their own once no worker holds
their pipes.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import threading
from concurrent.futures import ProcessPoolExecutor

# How often a worker without pidfd support checks that its owner still runs.
_POLL_SECONDS = 0.5
# Exit status of a worker that found its owner gone (nobody reads it; it shows in ps logs).
_ORPHANED = 3


def worker_init(owner_pid: int) -> None:
    """Initializer of every longteng worker process: the owner handles Ctrl-C and SIGTERM
    (and tears the pool down); the worker dies with the owner."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_exit_when_gone, args=(owner_pid,), name="longteng-owner-watch", daemon=True).start()


def _exit_when_gone(owner_pid: int) -> None:
    try:
        fd = os.pidfd_open(owner_pid)
    except (AttributeError, OSError):
        fd = None
    if fd is None:
        while _alive(owner_pid):
            select.select([], [], [], _POLL_SECONDS)
    else:
        select.select([fd], [], [])  # readable once the owner has exited
    os._exit(_ORPHANED)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_pool(workers: int, method: str = "forkserver") -> ProcessPoolExecutor:
    """A process pool whose workers die with this process; ``method`` falls back to spawn
    where it is not available."""
    context = multiprocessing.get_context(method if method in multiprocessing.get_all_start_methods() else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=worker_init, initargs=(os.getpid(),))


def stop_pool(pool: ProcessPoolExecutor, *, interrupted: bool) -> None:
    """Shut a pool down: after a normal end wait for it; when interrupted, kill its workers
    now rather than let them finish photos nobody will read."""
    if not interrupted:
        pool.shutdown(wait=True)
        return
    # ProcessPoolExecutor has no public way to stop running workers.
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout=5)


class owned_pool:
    """``with owned_pool(n) as pool``: a :func:`process_pool` stopped on the way out, at
    once when the block raised (Ctrl-C, SIGTERM, an error)."""

    def __init__(self, workers: int, method: str = "forkserver") -> None:
        self.pool = process_pool(workers, method)

    def __enter__(self) -> ProcessPoolExecutor:
        return self.pool

    def __exit__(self, exc_type, exc, tb) -> None:
        stop_pool(self.pool, interrupted=exc_type is not None)
