"""Decode the next message while the current one is estimated (issue 19).

On a GPU most of a frame's time is the host waiting for the device, and the next frame's JPEG
decode (OpenCV releases the GIL) fits into that wait. :func:`decoded_ahead` runs ``decode`` one item
ahead in a single worker thread: while the caller works on item ``n``, item ``n + 1`` is being
decoded. At most one item is in flight, so nothing queues up, and the items come back in their
order. An exception from ``decode`` is handed back with its item rather than raised in the worker,
so the caller keeps its own order of checks and counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Decoded", "decode_now", "decoded_ahead"]

Item = TypeVar("Item")
Value = TypeVar("Value")


@dataclass(frozen=True)
class Decoded(Generic[Value]):
    """What ``decode`` returned for one item, or the exception it raised, and how long it took."""

    value: Value | None
    error: Exception | None = None
    seconds: float = 0.0

    def get(self) -> Value:
        """The value; re-raises the decode's exception."""
        if self.error is not None:
            raise self.error
        return self.value


def decode_now(decode: Callable[[Item], Value], item: Item) -> Decoded[Value]:
    """``decode(item)`` as a :class:`Decoded` (an ``Exception`` is kept, not raised)."""
    started_s = time.perf_counter()
    try:
        value = decode(item)
    except Exception as error:  # noqa: BLE001 - handed back to the caller, who reports it
        return Decoded(None, error, time.perf_counter() - started_s)
    return Decoded(value, None, time.perf_counter() - started_s)


def decoded_ahead(items: Iterable[Item], decode: Callable[[Item], Value],
                  ahead: bool = True) -> Iterator[tuple[Item, Decoded[Value]]]:
    """``(item, decode(item))`` for every item, the next one decoded while the caller works.

    With ``ahead`` False, each item is decoded when it is reached (no thread): the same pairs.
    Closing the iterator early (``break``) waits for the one decode in flight.
    """
    if not ahead:
        for item in items:
            yield item, decode_now(decode, item)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mp3d_decode") as worker:
        pending: tuple[Item, Future] | None = None
        for item in items:
            future = worker.submit(decode_now, decode, item)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (item, future)
        if pending is not None:
            yield pending[0], pending[1].result()
