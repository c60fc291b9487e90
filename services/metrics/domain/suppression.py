"""Small-number suppression: no figure built from fewer than five people is shown, and no suppressed
cell of a breakdown can be recovered by subtracting the visible cells from a visible total.

Primary suppression hides every cell of 1-4 people. Complementary suppression then hides the smallest
visible cells until the hidden cells of the breakdown together hold at least five people and are at
least two: subtracting the visible cells from the total then yields only a figure about five or more
people taken together, never one cell. A breakdown whose total is under five is hidden entirely.
Empty cells (no people) carry no figure and are shown as such.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

MIN_PEOPLE = 5
SUPPRESSED = "< 5"

K = TypeVar("K", bound=Hashable)


def suppressed_cells(counts: Mapping[K, int], minimum: int = MIN_PEOPLE) -> set[K]:
    """The cells of one breakdown to hide, given the number of people behind each."""
    total = sum(counts.values())
    if total < minimum:
        return {k for k, n in counts.items() if n > 0}
    hidden = {k for k, n in counts.items() if 0 < n < minimum}
    visible = sorted((n, str(k), k) for k, n in counts.items() if n > 0 and k not in hidden)
    while hidden and (len(hidden) < 2 or sum(counts[k] for k in hidden) < minimum) and visible:
        _, _, k = visible.pop(0)
        hidden.add(k)
    return hidden


@dataclass(frozen=True)
class Figure:
    """One reported number with the count of people behind it; ``value`` is None when suppressed."""

    value: float | None
    n: int
    suppressed: bool = False

    @property
    def display(self) -> str:
        if self.suppressed:
            return SUPPRESSED
        if self.value is None:
            return "n/a"
        if float(self.value).is_integer():
            return str(int(self.value))
        return f"{self.value:.2f}"


def figure(value: float | None, n: int, minimum: int = MIN_PEOPLE) -> Figure:
    """A standalone figure: hidden when fewer than ``minimum`` people stand behind it."""
    if 0 < n < minimum:
        return Figure(None, n, suppressed=True)
    return Figure(value if n > 0 else None, n)


def count(value: int, people: int, minimum: int = MIN_PEOPLE) -> Figure:
    """A count (of enrolments, sessions, goals...) with the people behind it; zero is shown as 0."""
    if 0 < people < minimum:
        return Figure(None, people, suppressed=True)
    return Figure(float(value), people)


def breakdown(cells: Mapping[K, tuple[float | None, int]], minimum: int = MIN_PEOPLE) -> dict[K, Figure]:
    """Cells (value, people) of one breakdown, with primary and complementary suppression applied."""
    hidden = suppressed_cells({k: n for k, (_, n) in cells.items()}, minimum)
    return {k: Figure(None, n, suppressed=True) if k in hidden else Figure(v, n) for k, (v, n) in cells.items()}
