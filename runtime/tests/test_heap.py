"""The collector setting a service applies once started (runtime/heap.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from runtime.heap import YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def collector() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


@pytest.mark.usefixtures("collector")
def test_settle_heap_freezes_what_exists_and_spaces_young_passes() -> None:
    _, middle, old = gc.get_threshold()
    survivor = [object()]
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)  # the older generations as they were
    assert survivor  # frozen objects stay alive and usable


@pytest.mark.usefixtures("collector")
def test_cycles_are_still_collected() -> None:
    settle_heap()

    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2  # a cycle made after settling is garbage to the collector as before
