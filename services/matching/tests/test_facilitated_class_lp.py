"""The class LP bound of facilitated placement (``facilitated_class_lp``): never below the exact optimum of
groups that keep eligibility, the size bounds and the department bound (CP-SAT), whatever partition of
people into classes and of mentors into types it is given; never above the department LP with one
class per person and one type per mentor; and tight where who may join whom binds."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.matching.domain.facilitated_class_lp import class_lp_bound, partition, reachable_by_type
from services.matching.domain.facilitated_lp import department_lp_bound
from services.matching.tests.test_facilitated_lp import exact_placement

Case = tuple[list[list[bool]], list[int], list[int], list[int], int, int, int, list[int], list[int]]


def _class_lp(
    eligible: np.ndarray,
    dept: list[int],
    own: list[int],
    free: list[int],
    size: tuple[int, int],
    limit: int,
    person_label: list[int],
    mentor_label: list[int],
) -> int | None:
    """The class LP with classes (department, ``person_label``) and types (own department, ``mentor_label``)."""
    d = max([*dept, *own]) + 1
    person_class = partition(list(zip(dept, person_label, strict=True)))
    class_department = np.zeros(int(person_class.max()) + 1, dtype=np.int64)
    class_department[person_class] = dept
    free_arr = np.array(free, dtype=np.int64)
    mentor_type = partition(list(zip(own, mentor_label, strict=True)))
    mentor_type[free_arr <= 0] = -1
    types = max(0, int(mentor_type.max()) + 1)
    if not types:
        return None
    room = np.maximum(0, limit - (np.array(own)[:, None] == np.arange(d)[None, :]).astype(np.int64))
    type_room = np.zeros((types, d), dtype=np.int64)
    type_free = np.zeros(types, dtype=np.int64)
    typed = np.flatnonzero(mentor_type >= 0)
    type_room[mentor_type[typed]] = room[typed]
    np.add.at(type_free, mentor_type[typed], free_arr[typed])
    reach = reachable_by_type(eligible, np.arange(len(dept), dtype=np.int64), mentor_type, types)
    return class_lp_bound(reach, person_class, class_department, type_room, type_free, size[0], size[1])


def _department_lp(
    eligible: np.ndarray, dept: list[int], own: list[int], free: list[int], size: tuple[int, int], limit: int
) -> int | None:
    d = max([*dept, *own]) + 1
    codes = np.array(dept, dtype=np.int64)
    by_department = np.stack([eligible[codes == c].sum(axis=0) for c in range(d)], axis=1).astype(np.int64)
    room = limit - (np.array(own)[:, None] == np.arange(d)[None, :]).astype(np.int64)
    people = np.bincount(codes, minlength=d).astype(np.int64)
    return department_lp_bound(by_department, people, np.maximum(0, room), np.array(free), size[0], size[1])


cases = st.integers(1, 7).flatmap(
    lambda n: st.integers(1, 4).flatmap(
        lambda m: st.tuples(
            st.lists(st.lists(st.booleans(), min_size=m, max_size=m), min_size=n, max_size=n),
            st.lists(st.integers(0, 2), min_size=n, max_size=n),
            st.lists(st.integers(0, 2), min_size=m, max_size=m),
            st.lists(st.integers(0, 2), min_size=m, max_size=m),
            st.integers(1, 3),
            st.integers(0, 2),
            st.integers(1, 2),
            st.lists(st.integers(0, 2), min_size=n, max_size=n),
            st.lists(st.integers(0, 2), min_size=m, max_size=m),
        )
    )
)


@settings(max_examples=80, deadline=None)
@given(cases)
def test_the_class_bound_is_never_below_the_exact_optimum_whatever_the_partition(case: Case) -> None:
    rows, dept, own, free, low, extra, limit, person_label, mentor_label = case
    eligible = np.array(rows, dtype=bool)
    size = (low, low + extra)
    bound = _class_lp(eligible, dept, own, free, size, limit, person_label, mentor_label)
    assert bound is None or bound >= exact_placement(eligible, dept, own, free, size, limit)


@settings(max_examples=60, deadline=None)
@given(cases)
def test_one_class_per_person_and_one_type_per_mentor_is_never_looser_than_the_department_lp(case: Case) -> None:
    rows, dept, own, free, low, extra, limit, _, _ = case
    eligible = np.array(rows, dtype=bool)
    size = (low, low + extra)
    by_department = _department_lp(eligible, dept, own, free, size, limit)
    finest = _class_lp(eligible, dept, own, free, size, limit, list(range(len(dept))), list(range(len(own))))
    if by_department is not None and finest is not None:
        assert finest <= by_department


def test_who_may_join_whom_binds_where_the_department_lp_does_not_see_it() -> None:
    """Groups of 3, at most 2 of a department; mentors A, B, C of department 0 (one place of it left per
    group), one group each, with three people of department 0 eligible for all. Department 1 has six
    people: two eligible for A, B and C, four for mentor D only (of department 1, so it can never reach
    three). Each group needs two of department 1; the department LP lets A, B and C take the same two
    (9), the class LP with a class per person knows there are two (one group: 3, the optimum)."""
    dept = [0, 0, 0, 1, 1, 1, 1, 1, 1]
    own, free = [0, 0, 0, 1], [1, 1, 1, 1]
    eligible = np.zeros((9, 4), dtype=bool)
    eligible[:5, :3] = True
    eligible[5:, 3] = True
    size, limit = (3, 3), 2
    assert _department_lp(eligible, dept, own, free, size, limit) == 9
    assert _class_lp(eligible, dept, own, free, size, limit, list(range(9)), list(range(4))) == 3
    assert exact_placement(eligible, dept, own, free, size, limit) == 3
    # coarser classes (department 1's six in one class, its rows the union) only loosen it, and stay valid
    coarse = _class_lp(eligible, dept, own, free, size, limit, [0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0])
    assert coarse is not None and coarse >= 3


def test_reachable_by_type_is_any_of_the_types_mentors() -> None:
    eligible = np.array([[True, False, False], [False, False, True], [False, False, False]])
    mentor_type = np.array([0, 0, 1], dtype=np.int64)
    reach = reachable_by_type(eligible, np.array([0, 1, 2], dtype=np.int64), mentor_type, 2)
    assert reach.tolist() == [[True, False], [False, True], [False, False]]
    # a mentor in no type (no free group) reaches nobody
    none = reachable_by_type(eligible, np.array([1], dtype=np.int64), np.array([0, 0, -1], dtype=np.int64), 1)
    assert none.tolist() == [[False]]
