"""Training keeps the memory a step frees for the next step, instead of giving it back to the system.

A step frees and allocates the same tensors again and again. glibc's malloc gives large freed
blocks back to the operating system: blocks above its mmap threshold as they are freed, and the
free top of its heap once that grows past its trim threshold. Each step then asked the kernel for
fresh pages: config M (bench/peers.py) in bf16 took 6,000-8,500 page faults a step, 15-20 ms of
system time. Raising the two thresholds keeps those pages in the process: 170-900 faults a step,
and the step 3.7% faster (ten pairs of fresh processes taking turns, 8 won).

The setting is glibc's and process-wide, for the rest of the process: at most
`TRIM_THRESHOLD_BYTES` of free memory stays at the top of the heap, where glibc's own rules keep
at most 64 MB. The page's Train runs in a process of its own (core/processes.py), which ends
with the run; its step buttons train in the server's process, which then keeps the setting.
Other C libraries keep their own rules.
"""

from __future__ import annotations

import ctypes
import functools
import os

_M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # the largest that glibc's own adjustment reaches on 64-bit systems
TRIM_THRESHOLD_BYTES = 256 << 20  # above a config-M step's churn: a few faults a step are left


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to serve blocks below 32 MB from its heap and to keep up to 256 MB free there.
    True where it did; False on other C libraries (macOS, Windows, musl), which stay as they are."""
    if not _is_glibc():
        return False
    libc = ctypes.CDLL(None)  # the running process's symbols, glibc's among them
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or no such name (macOS, musl)
        return False
