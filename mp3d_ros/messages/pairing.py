"""Which CameraInfo goes with an image: the node's pairing rule as a pure function of stamps.

The node pairs an image with a CameraInfo through message_filters' ApproximateTimeSynchronizer:
stamps must differ by strictly less than ``sync_slop_s`` (so a slop of 0 never pairs). An image
that finds no CameraInfo within the slop falls back to the latest CameraInfo of its frame_id, with a
warning. Offline (a replay of a bag), "latest" is the newest CameraInfo stamped at or before the
image; the pairing rule is :func:`pair_stamp`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

__all__ = ["DEFAULT_SYNC_SLOP_S", "Pairing", "pair_stamp"]

DEFAULT_SYNC_SLOP_S = 0.02  # the node's default ``sync_slop_s``


@dataclass(frozen=True)
class Pairing:
    """The index of the chosen stamp and whether it was within the slop (False: fallback)."""

    index: int
    within_slop: bool


def pair_stamp(stamps_ns: Sequence[int], stamp_ns: int, slop_ns: int) -> Pairing | None:
    """Pair ``stamp_ns`` with one of the sorted ``stamps_ns``.

    The nearest stamp with ``|difference| < slop_ns`` is paired (on a tie, the earlier one); else
    the latest stamp at or before ``stamp_ns`` is the fallback; None when there is neither.
    """
    right = bisect.bisect_right(stamps_ns, stamp_ns)
    candidates = [i for i in (right - 1, right) if 0 <= i < len(stamps_ns)]
    if candidates:
        nearest = min(candidates, key=lambda i: (abs(stamps_ns[i] - stamp_ns), i))
        if abs(stamps_ns[nearest] - stamp_ns) < slop_ns:
            return Pairing(nearest, True)
    return Pairing(right - 1, False) if right else None
