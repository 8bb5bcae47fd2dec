"""Keep freed heap memory in the process during CPU training (glibc only).

A CPU training step allocates and frees gigabytes of activations and temporaries. glibc's malloc returns freed
memory at the top of the heap to the system (trim) and serves blocks over a dynamic threshold with fresh
``mmap`` calls, so the next step touches new pages again: page faults and zeroing on every step. For the
Winograd convolutions of the CycleGAN generator (many 5-20 MB temporaries) that costs about a third of a
256x256 step (``python bench/train_cyclegan.py``: 16 s -> 11 s per step on 2 cores). Setting a fixed mmap
threshold (the largest glibc allows, 32 MB) and a very high trim threshold keeps that memory for reuse. The
process's resident memory then stays at its peak instead of going up and down, which is what a training
process does anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's upper limit on 64-bit systems
TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes: keep up to 2 GiB of free heap top


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (see the module docstring). Returns True when both settings
    were applied; False elsewhere (macOS, Windows, musl), where nothing changes. Safe to call more than once."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok_mmap = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok_trim = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return ok_mmap and ok_trim
