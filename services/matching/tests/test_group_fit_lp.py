"""The benchmark's group fit LP (``bench/group_fit_lp.py``) against brute force on small pools: it is never
below the best grouping of the same placed people (else it would not be a bound), also when arcs are
pruned, and it is below the transportation bound where that one ignores the group minimum."""

from __future__ import annotations

import itertools
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.group_fit_lp import group_fit_lp_bound

DEPARTMENTS = ("eng", "ops", "hr")


def best_grouping(
    fits: list[list[int]], people: list[str], mentors: list[str], allowed: list[int], lo: int, hi: int, limit: int
) -> int | None:
    """The best total fit of any grouping that places everyone, by trying every (mentor, group) slot."""
    slots = [(k, g) for k, a in enumerate(allowed) for g in range(a)]
    best: int | None = None
    for choice in itertools.product(range(len(slots)), repeat=len(people)):
        members: dict[int, list[int]] = {}
        for i, s in enumerate(choice):
            members.setdefault(s, []).append(i)
        ok = True
        for s, group in members.items():
            k = slots[s][0]
            count = Counter([people[i] for i in group] + [mentors[k]])
            if not lo <= len(group) <= hi or max(count[people[i]] for i in group) > limit:
                ok = False
                break
        if ok:
            total = sum(fits[i][slots[s][0]] for i, s in enumerate(choice))
            best = total if best is None else max(best, total)
    return best


@st.composite
def pools(draw: st.DrawFn) -> tuple[list[list[int]], list[str], list[str], list[int], int, int, int, int]:
    n = draw(st.integers(2, 6))
    m = draw(st.integers(1, 2))
    fits = [[draw(st.integers(0, 9)) for _ in range(m)] for _ in range(n)]
    people = [draw(st.sampled_from(DEPARTMENTS)) for _ in range(n)]
    mentors = [draw(st.sampled_from(DEPARTMENTS)) for _ in range(m)]
    allowed = [draw(st.integers(1, 2)) for _ in range(m)]
    lo = draw(st.integers(1, 3))
    hi = draw(st.integers(lo, 4))
    limit = draw(st.integers(1, 2))
    keep = draw(st.integers(1, m))
    return fits, people, mentors, allowed, lo, hi, limit, keep


def arcs_of(fits: list[list[int]], keep: int) -> list[tuple[str, list[tuple[int, int]], int | None]]:
    """Each person's ``keep`` best arcs, and the next-best fit when some are left out (as the bench does)."""
    out: list[tuple[str, list[tuple[int, int]], int | None]] = []
    for i, row in enumerate(fits):
        order = sorted(range(len(row)), key=lambda k: (-row[k], k))
        out.append((f"p{i}", [(k, row[k]) for k in order[:keep]], row[order[keep]] if keep < len(row) else None))
    return out


@settings(max_examples=150, deadline=None)
@given(pools())
def test_never_below_the_best_grouping(
    pool: tuple[list[list[int]], list[str], list[str], list[int], int, int, int, int],
) -> None:
    fits, people, mentors, allowed, lo, hi, limit, keep = pool
    best = best_grouping(fits, people, mentors, allowed, lo, hi, limit)
    bound = group_fit_lp_bound(
        arcs_of(fits, keep), mentors, allowed, {f"p{i}": d for i, d in enumerate(people)},
        group_min=lo, group_max=hi, department_limit=limit,
    )  # fmt: skip
    if best is not None:  # a placed set always has a grouping in the bench; here some draws have none
        assert bound is not None and bound >= best


def test_the_group_minimum_with_the_department_bound_binds() -> None:
    """Four people of one department, one mentor of another who may lead two groups of 2-3, at most one of
    a department per group: no grouping places them (the transportation bound would give each its fit,
    two per group's room), and the LP has no solution either."""
    fits = [[5], [5], [5], [5]]
    departments = {f"p{i}": "eng" for i in range(4)}
    bound = group_fit_lp_bound(
        arcs_of(fits, 1), ["ops"], [2], departments, group_min=2, group_max=3, department_limit=1
    )
    assert best_grouping(fits, ["eng"] * 4, ["ops"], [2], 2, 3, 1) is None
    assert bound is None


def test_tight_where_groups_are_whole() -> None:
    """Two mentors, four people of two departments, one per department per group, groups of exactly 2:
    the LP's optimum is the best grouping's fit."""
    fits = [[9, 1], [8, 2], [1, 7], [2, 6]]
    people = ["eng", "ops", "eng", "ops"]
    bound = group_fit_lp_bound(
        arcs_of(fits, 2), ["hr", "hr"], [1, 1], {f"p{i}": d for i, d in enumerate(people)},
        group_min=2, group_max=2, department_limit=1,
    )  # fmt: skip
    assert bound == best_grouping(fits, people, ["hr", "hr"], [1, 1], 2, 2, 1) == 30
