"""One test per rule of the facilitated model, as the CP-SAT primer does: build a tiny model with the
rule under test, fix a few variables, expect FEASIBLE or INFEASIBLE."""

from __future__ import annotations

import numpy as np
from ortools.sat.python import cp_model

from services.matching.domain.facilitated_model import (
    FacilitatedModel,
    add_apart,
    add_assignment,
    add_co_eligibility,
    add_co_facilitators,
    add_department_bound,
    add_group_size,
    add_load_slots,
    add_locks,
    add_slots,
    hint_from_greedy,
)
from services.matching.domain.load_levels import load_terms


def feasible(fm: FacilitatedModel, *fixed: tuple[cp_model.IntVar, int]) -> bool:
    """Is the model feasible with these variables fixed? (On a copy: the model itself is unchanged.)"""
    model = fm.model.clone()
    for var, value in fixed:
        model.add(model.get_int_var_from_proto_index(var.index) == value)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    status = solver.solve(model)
    assert status in (cp_model.OPTIMAL, cp_model.FEASIBLE, cp_model.INFEASIBLE)
    return status != cp_model.INFEASIBLE


def two_mentors(mentees: list[str], free: tuple[int, int] = (1, 1), size: tuple[int, int] = (1, 3)) -> FacilitatedModel:
    """Mentors 0 and 1 (free capacity ``free``), every mentee a candidate of both, fit 1 with mentor 0."""
    fm = FacilitatedModel()
    add_slots(fm, {0: len(mentees), 1: len(mentees)}, np.array(free), size[0])
    add_assignment(fm, {pid: [(0, 1), (1, 0)] for pid in mentees})
    add_group_size(fm, *size)
    return fm


def test_slots_open_in_order() -> None:
    fm = FacilitatedModel()
    add_slots(fm, {0: 6}, np.array([3]), 2)
    assert len(fm.slots[0]) == 3
    assert not feasible(fm, (fm.slots[0][0], 0), (fm.slots[0][1], 1))
    assert feasible(fm, (fm.slots[0][0], 1), (fm.slots[0][1], 0))


def test_slots_are_capped_by_free_capacity_and_candidates() -> None:
    fm = FacilitatedModel()
    add_slots(fm, {0: 5, 1: 1, 2: 9}, np.array([4, 3, 0]), 2)
    assert {k: len(v) for k, v in fm.slots.items()} == {0: 2}, "5 // 2 groups; mentor 1: too few; mentor 2: full"


def test_a_mentee_sits_in_at_most_one_group() -> None:
    fm = two_mentors(["a"])
    assert not feasible(fm, (fm.x_of["a"][(0, 0)], 1), (fm.x_of["a"][(1, 0)], 1))
    assert feasible(fm, (fm.x_of["a"][(0, 0)], 1), (fm.placed["a"], 1))
    fm = two_mentors(["a"])
    assert not feasible(fm, (fm.placed["a"], 1), (fm.x_of["a"][(0, 0)], 0), (fm.x_of["a"][(1, 0)], 0))


def test_a_mentee_only_joins_an_open_group() -> None:
    fm = two_mentors(["a"])
    assert not feasible(fm, (fm.slots[0][0], 0), (fm.x_of["a"][(0, 0)], 1))


def test_group_size_holds_for_open_groups_only() -> None:
    fm = two_mentors(["a", "b", "c"], size=(2, 2))
    assert not feasible(fm, (fm.slots[0][0], 1), (fm.placed["a"], 1), (fm.placed["b"], 0), (fm.placed["c"], 0))
    fm = two_mentors(["a", "b", "c"], size=(2, 2))
    assert not feasible(fm, *[(fm.x_of[p][(0, 0)], 1) for p in "abc"]), "three in a group of at most two"
    fm = two_mentors(["a", "b", "c"], size=(2, 2))
    assert feasible(fm, (fm.x_of["a"][(0, 0)], 1), (fm.x_of["b"][(0, 0)], 1), (fm.placed["c"], 0))


def test_two_mentees_apart_never_share_a_group() -> None:
    fm = two_mentors(["a", "b"], size=(1, 3))
    add_apart(fm, [("a", "b")])
    assert not feasible(fm, (fm.x_of["a"][(0, 0)], 1), (fm.x_of["b"][(0, 0)], 1))
    fm = two_mentors(["a", "b"], size=(1, 3))
    add_apart(fm, [("a", "b")])
    assert feasible(fm, (fm.x_of["a"][(0, 0)], 1), (fm.x_of["b"][(1, 0)], 1))


def test_the_department_bound_counts_the_mentor() -> None:
    dept = {"a": "Sales", "b": "Sales", "c": "Legal"}
    fm = two_mentors(list(dept), size=(1, 3))
    add_department_bound(fm, 1, dept, ["Legal", "HR"])
    assert not feasible(fm, (fm.x_of["c"][(0, 0)], 1)), "mentor 0 is in Legal: no Legal member with a bound of 1"
    fm = two_mentors(list(dept), size=(1, 3))
    add_department_bound(fm, 1, dept, ["Legal", "HR"])
    assert not feasible(fm, (fm.x_of["a"][(1, 0)], 1), (fm.x_of["b"][(1, 0)], 1))
    fm = two_mentors(list(dept), size=(1, 3))
    add_department_bound(fm, 1, dept, ["Legal", "HR"])
    assert feasible(fm, (fm.x_of["a"][(1, 0)], 1), (fm.x_of["c"][(1, 0)], 1))


def test_a_mentor_mentee_lock_puts_the_mentee_with_that_mentor() -> None:
    fm = two_mentors(["a"])
    applied, notes = add_locks(fm, [("M1", "a")], {"M0": 0, "M1": 1})
    assert (applied, notes) == (1, [])
    assert not feasible(fm, (fm.x_of["a"][(0, 0)], 1))
    fm = two_mentors(["a"])
    add_locks(fm, [("M1", "a")], {"M0": 0, "M1": 1})
    assert feasible(fm, (fm.x_of["a"][(1, 0)], 1))


def test_a_lock_with_a_mentor_who_is_not_a_candidate_is_noted_not_applied() -> None:
    fm = two_mentors(["a"])
    applied, notes = add_locks(fm, [("M9", "a")], {"M0": 0, "M1": 1, "M9": 2})
    assert applied == 0 and notes == ["lock M9/a not applied: not an eligible pair with room"]


def test_two_locked_mentees_are_together_or_both_out() -> None:
    fm = two_mentors(["a", "b"], size=(1, 3))
    add_locks(fm, [("a", "b")], {})
    assert not feasible(fm, (fm.x_of["a"][(0, 0)], 1), (fm.x_of["b"][(1, 0)], 1))
    fm = two_mentors(["a", "b"], size=(1, 3))
    add_locks(fm, [("a", "b")], {})
    assert not feasible(fm, (fm.placed["a"], 1), (fm.placed["b"], 0))
    fm = two_mentors(["a", "b"], size=(1, 3))
    add_locks(fm, [("a", "b")], {})
    assert feasible(fm, (fm.x_of["a"][(1, 0)], 1), (fm.x_of["b"][(1, 0)], 1))


def co_facilitated(eligible_b_for_2: bool, apart: set[tuple[int, int]] | None = None) -> FacilitatedModel:
    """Lead 0 with co-facilitator options 1 and 2 (one per group), mentees a and b."""
    fm = FacilitatedModel()
    add_slots(fm, {0: 2}, np.array([1, 1, 1]), 1)
    add_co_facilitators(fm, {0: [1, 2]}, 1, apart or set())
    add_assignment(fm, {"a": [(0, 0)], "b": [(0, 0)]})
    add_group_size(fm, 1, 2)
    eligible = {"a": np.array([True, True, True]), "b": np.array([True, True, eligible_b_for_2])}
    add_co_eligibility(fm, eligible, {"a": np.array([0, 2, 0]), "b": np.array([0, 0, 0])})
    return fm


def test_an_open_group_takes_exactly_its_co_facilitators() -> None:
    fm = co_facilitated(True)
    (_, c1), (_, c2) = fm.co[(0, 0)]
    assert not feasible(fm, (fm.slots[0][0], 1), (c1, 1), (c2, 1))
    fm = co_facilitated(True)
    (_, c1), (_, c2) = fm.co[(0, 0)]
    assert not feasible(fm, (fm.slots[0][0], 0), (c1, 1))


def test_co_facilitators_apart_never_share_a_group() -> None:
    fm = FacilitatedModel()
    add_slots(fm, {0: 2}, np.array([1, 1, 1]), 1)
    add_co_facilitators(fm, {0: [1, 2]}, 2, {(1, 2)})
    assert not feasible(fm, (fm.slots[0][0], 1))


def test_a_co_facilitator_must_be_eligible_for_every_member_and_its_fit_counts() -> None:
    fm = co_facilitated(False)
    c2 = fm.co[(0, 0)][1][1]
    assert not feasible(fm, (fm.x_of["b"][(0, 0)], 1), (c2, 1))
    fm = co_facilitated(False)
    fm.model.maximize(sum(fm.fit_terms))
    solver = cp_model.CpSolver()
    assert solver.solve(fm.model) == cp_model.OPTIMAL and solver.objective_value == 2, "a with co-facilitator 1"


def test_load_slots_are_ordered_and_within_free_capacity() -> None:
    fm = co_facilitated(True)
    add_load_slots(fm, np.array([1, 1, 1]), ["M0", "M1", "M2"], co_facilitated=True)
    assert set(fm.opened) == {"M0", "M1", "M2"}
    assert not feasible(fm, (fm.opened["M1"][0], 0), (fm.co[(0, 0)][0][1], 1))


def test_load_terms_cap_every_mentor_at_the_max_ratio_and_count_mentors_used() -> None:
    from services.matching.domain.common import Prepared
    from services.matching.tests.factories import mentor, person, pool

    prep = Prepared.of(pool([mentor("M0", capacity=2), mentor("M1", capacity=2), person("a")]), 1)
    fm = FacilitatedModel()
    add_slots(fm, {0: 2, 1: 2}, np.array([2, 2]), 1)
    add_load_slots(fm, np.array([2, 2]), ["M0", "M1"], co_facilitated=False)
    terms = load_terms(fm.model, prep, fm.opened)
    assert terms is not None
    top, used = terms
    fm.model.add(top <= 500)  # max load ratio 0.5: one group each at most
    assert not feasible(fm, (fm.slots[0][1], 1))
    fm.model.clear_objective()  # type: ignore[no-untyped-call]
    fm.model.maximize(used)
    solver = cp_model.CpSolver()
    assert solver.solve(fm.model) == cp_model.OPTIMAL and solver.objective_value == 2


def test_the_greedy_hint_is_a_feasible_complete_solution() -> None:
    fm = two_mentors(["a", "b", "c"], free=(1, 1), size=(1, 2))
    hint_from_greedy(fm, [([0], ["a", "b"]), ([1], ["c"])])
    assert all(var in fm.hint for var in [*fm.placed.values(), *fm.x.values()])
    assert feasible(fm, *fm.hint.items())
    assert fm.hint[fm.x_of["c"][(1, 0)]] == 1 and fm.hint[fm.placed["a"]] == 1
