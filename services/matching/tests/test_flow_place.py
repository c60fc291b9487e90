"""People left out placed by a flow that moves the placed and opens groups (``flow_place``).

On the outside-in probe's pool where at most one of a department sits in a group (279 mentees of
Marketing, 269 of Legal, groups of 3 to 8, many declared conflicts) the fill placed 957 of 1,000 while
an exact MILP places all 1,000: every group an eligible mentor led already held someone of the left-out
person's department, and 117 of the groups were led by mentors of Marketing or Legal, who can take
nobody of their own department there. The flow places everyone left out that it can, gives up new
groups it cannot fill to their minimum (``fit_polish.short_extras``) and may close those groups.
"""

from __future__ import annotations

from bench.probes.group_probe import cases, certificates
from services.matching.domain import match, validate
from services.matching.domain.fit_polish import flow_repaired, short_extras
from services.matching.domain.reassignment import Arcs, Reassignment, Slot

SEED = 4242


def test_where_the_department_bound_binds_everyone_placeable_is_placed() -> None:
    inp = cases()["fac conflicts0.5 dept1 s17 1000"][1]()
    result = match(inp, SEED)
    assert validate(inp, result) == []
    assert result.stats.placed_bound == 1000
    assert result.stats.placed_count == 1000
    insertable, lottery_swaps, complete = certificates(inp, result)
    assert complete and insertable == 0 and lottery_swaps == 0
    assert [g.model_dump() for g in match(inp, SEED).groups] == [g.model_dump() for g in result.groups]


def _problem(
    assign: dict[str, Slot],
    optional: tuple[str, ...],
    options: dict[str, list[Slot]],
    *,
    extra: tuple[Slot, ...] = (),
    dept: dict[str, str] | None = None,
    size: tuple[int, int] = (2, 3),
) -> Reassignment:
    people = sorted({*assign, *optional})
    slots = {s for opts in options.values() for s in opts}
    return Reassignment(
        assign=assign,
        arcs=Arcs.of(people, options, {}),
        dept=dept or dict.fromkeys(people, "d"),
        mentor_dept=dict.fromkeys(slots, "m"),
        apart=frozenset(),
        size_min=size[0],
        size_max=size[1],
        max_same_department=None if dept is None else 1,
        extra=frozenset(extra),
        optional=optional,
    )


def test_the_placed_stay_placed_and_the_earliest_drawn_take_the_places_left() -> None:
    a = (0, 0)
    drawn = ("z-drawn-first", "a-drawn-second")  # lottery order, not id order
    problem = _problem({"p1": a, "p2": a}, drawn, {key: [a] for key in ["p1", "p2", *drawn]})
    assert flow_repaired(problem) == {"p1": a, "p2": a, "z-drawn-first": a}  # one place left


def test_a_new_group_takes_a_placed_person_from_a_group_above_its_minimum_to_reach_its_own() -> None:
    a, b = (0, 0), (1, 0)
    options = {"p1": [a], "p2": [a], "p3": [a, b], "left": [b]}
    problem = _problem({"p1": a, "p2": a, "p3": a}, ("left",), options, extra=(b,))
    got = flow_repaired(problem)
    assert got == {"p1": a, "p2": a, "p3": b, "left": b}
    assert short_extras(problem) == set()


def test_a_new_group_nobody_can_fill_to_its_minimum_is_short() -> None:
    a, b, c = (0, 0), (1, 0), (2, 0)
    options = {"p1": [a], "p2": [a], "p3": [a, b], "left": [b], "alone": [c]}
    problem = _problem({"p1": a, "p2": a, "p3": a}, ("left", "alone"), options, extra=(b, c))
    assert short_extras(problem) == {c}
    assert flow_repaired(problem) is None  # with c open nobody can keep it at its minimum


def test_the_department_bound_holds_in_the_flow() -> None:
    a, b = (0, 0), (1, 0)
    options = {key: [a, b] for key in ["p1", "p2", "x1", "x2"]}
    dept = {"p1": "sales", "p2": "legal", "x1": "sales", "x2": "legal"}
    problem = _problem({"p1": a, "p2": a}, ("x1", "x2"), options, extra=(b,), dept=dept, size=(2, 4))
    got = flow_repaired(problem)
    assert got is not None and len(got) == 4
    for s in (a, b):
        members = [p for p, g in got.items() if g == s]
        assert sorted(dept[p] for p in members) == ["legal", "sales"]
