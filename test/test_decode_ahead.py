"""decoded_ahead: the next item decodes while the caller works, in order, errors handed back."""

from __future__ import annotations

import threading

import pytest

from mp3d_ros.messages.decode_ahead import decode_now, decoded_ahead


def square_or_fail(item: int) -> int:
    if item == 3:
        raise ValueError("item 3 does not decode")
    return item * item


@pytest.mark.parametrize("ahead", [False, True])
def test_every_item_comes_back_in_order_with_its_value_or_error(ahead: bool) -> None:
    pairs = list(decoded_ahead(range(6), square_or_fail, ahead))
    assert [item for item, _ in pairs] == list(range(6))
    assert [d.value for _, d in pairs] == [0, 1, 4, None, 16, 25]
    error = pairs[3][1].error
    assert isinstance(error, ValueError) and "item 3" in str(error)
    with pytest.raises(ValueError, match="item 3"):
        pairs[3][1].get()
    assert pairs[4][1].get() == 16


def test_the_next_item_decodes_while_the_caller_works_on_the_current_one() -> None:
    decoded = {k: threading.Event() for k in range(3)}

    def decode(item: int) -> int:
        decoded[item].set()
        return item

    seen = []
    for item, _ in decoded_ahead(range(3), decode):
        if item + 1 in decoded:  # the caller is busy with item: the next is decoded meanwhile
            assert decoded[item + 1].wait(timeout=10.0)
        seen.append(item)
    assert seen == [0, 1, 2]


def test_only_one_item_is_decoded_ahead() -> None:
    started: list[int] = []

    def decode(item: int) -> int:
        started.append(item)
        return item

    for item, _ in decoded_ahead(range(10), decode):
        assert max(started) <= item + 1  # never more than one ahead: no queue builds up
        if item == 4:
            break
    assert max(started) == 5


def test_decode_now_keeps_the_exception_and_the_time() -> None:
    decoded = decode_now(square_or_fail, 2)
    assert decoded.value == 4 and decoded.error is None and decoded.seconds >= 0.0
    failed = decode_now(square_or_fail, 3)
    assert failed.value is None and isinstance(failed.error, ValueError) and failed.seconds >= 0.0
