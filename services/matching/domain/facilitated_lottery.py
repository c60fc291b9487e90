"""The lottery pass of the facilitated finish (``facilitated_fill``): each seeker left out, in lottery
order, takes the place of a later-drawn member where it can. Its own module so that the finish stays
readable; the finish's module doc says what it is for."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from typing import Protocol


class Swaps(Protocol):
    """What the lottery pass needs of a finish: its rule-check budget and the swap itself."""

    work: int

    def swap(self, u: str) -> str | None:
        """``u`` takes the place of a later-drawn member (returned), or None."""


def lottery_pass(
    f: Swaps,
    left: list[str],
    ranks: Mapping[str, int],
    group_of: Mapping[str, int],
    place: Callable[[str], bool],
    bound: int,
) -> int:
    """The lottery pass (see the module doc) over the seekers ``left`` out, in lottery order: each takes
    the place of a later-drawn member where it can, and the displaced one is placed by ``place`` (while
    placed is below ``bound``) or waits its turn. ``group_of`` is the finish's own, read as it changes.
    Returns the swaps made."""
    heap = [(ranks[p], p) for p in left if p not in group_of]
    heapq.heapify(heap)
    swapped, placed = 0, len(group_of)
    while heap and f.work > 0:
        _, u = heapq.heappop(heap)
        if u in group_of:
            continue
        q = f.swap(u)
        if q is None:
            continue
        swapped += 1
        if not (placed < bound and place(q)):
            heapq.heappush(heap, (ranks[q], q))
        placed = len(group_of)
    return swapped
