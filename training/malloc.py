"""Tell glibc to keep freed memory: eager PyTorch on CPU otherwise spends its steps in page faults.

glibc returns large freed blocks to the OS after every allocation burst (mmap threshold
and trim threshold of 128 KiB by default); a training step frees and reallocates hundreds
of MB of activations, so every step pays page faults again (bench/bench_train_step.py
measured the difference). The environment variables MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ do the same, but only when set before the process starts: a user
typing `longteng train` should not have to know them, so the program sets them itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1_000_000_000


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where there is no glibc."""
    if os.name != "posix":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
