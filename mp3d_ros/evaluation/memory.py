"""Keep a long replay's resident memory bounded on glibc.

A replay frees a decoded image, a network input and the bag's message bytes every frame while
torch's threads allocate in their own malloc arenas. glibc raises its mmap threshold each time a
large mmapped block is freed, after which frame-sized buffers come from the arenas, fragment them
and are kept: resident memory grows with the number of frames. Two measures bound it without
slowing the network (a fixed low mmap threshold did bound it too, but made every large torch
temporary a fresh mmap and the replay up to twice as slow):

- :func:`bound_malloc` caps the number of arenas at start;
- :func:`release_free_memory` (``malloc_trim(0)``) hands the arenas' free pages back; the replay
  calls it every :data:`TRIM_EVERY_FRAMES` frames.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
from typing import Any

__all__ = ["M_ARENA_MAX_COUNT", "TRIM_EVERY_FRAMES", "bound_malloc", "release_free_memory"]

_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
M_ARENA_MAX_COUNT = 2
TRIM_EVERY_FRAMES = 50  # malloc_trim takes about a millisecond; a frame takes about 100 ms on CPU


@functools.lru_cache(maxsize=1)
def _glibc() -> Any | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def bound_malloc(arena_max: int = M_ARENA_MAX_COUNT) -> bool:
    """Cap glibc's malloc arenas for this process; False where there is no glibc.

    Call it before the work that allocates (threads that already have an arena keep it).
    """
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_ARENA_MAX, arena_max))


def release_free_memory() -> bool:
    """Return free heap pages of every arena to the system; False where there is no glibc."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
