"""Which mentors lead the groups, for fit (``load_swaps``): the swap search and its realisation keep the
placed set, every rule, the max load ratio and the mentors used, never lose fit, and replay."""

from __future__ import annotations

from collections import Counter

from bench.matching_pools import one_department
from bench.probes.group_probe import group_ok
from bench.synthetic_pool import instance
from contracts.policy import Form
from services.matching.domain import MatchingInput, match, validate
from services.matching.domain.common import Prepared
from services.matching.domain.facilitated import _prepare
from services.matching.domain.facilitated_run import FacilitatedRun
from services.matching.domain.load_swaps import LoadFlow, Positions, Shape, deal, loads_of, rechoose, total_fit


def _one_dept(mentees: int, seed: int) -> MatchingInput:
    """The benchmark's one-dept family, small: 80 % of the people in one department, at most 2 of a
    department per group, groups of 3-8."""
    inp = instance(mentees, Form.FACILITATED_GROUP, seed=seed, conflicts=0.05)
    return one_department(
        inp.model_copy(update={"policy": inp.policy.model_copy(update={"max_same_department": 2})}), seed
    )


def _run(mentees: int, seed: int) -> tuple[MatchingInput, Prepared, FacilitatedRun, Positions]:
    inp = _one_dept(mentees, seed)
    prep = Prepared.of(inp, 7)
    run = _prepare(prep, 30.0)
    position = {m: k for k, m in enumerate(prep.mentor_ids)}
    groups = [([position[ms[0]]], sorted(members)) for ms, members in run.greedy_by_id()]
    return inp, prep, run, groups


def _ratio(prep: Prepared, groups: Positions) -> float:
    used = Counter(ms[0] for ms, _ in groups)
    return max((prep.load[m] + used[k]) / prep.capacity[m] for k, m in enumerate(prep.mentor_ids) if prep.capacity[m])


def test_regrouping_keeps_placed_rules_max_load_and_mentors_used_and_gains_fit() -> None:
    changed = 0
    for seed in range(6):
        inp, prep, run, groups = _run(150, seed)
        out = rechoose(prep, run.el, run.free, groups, budget=200)
        if out is None:
            continue
        by_id = {p.participant_id: p for p in inp.participants}
        ids = prep.mentor_ids
        assert sorted(p for _, ms in out for p in ms) == sorted(p for _, ms in groups for p in ms), seed
        assert all(group_ok(inp, by_id, [ids[ms[0]]], members) for ms, members in out), seed
        assert _ratio(prep, out) <= _ratio(prep, groups) + 1e-9, seed
        assert len({ms[0] for ms, _ in out}) >= len({ms[0] for ms, _ in groups}), seed
        assert total_fit(run.el, out) > total_fit(run.el, groups), seed
        changed += Counter(ms[0] for ms, _ in out) != Counter(ms[0] for ms, _ in groups)
    assert changed, "no pool had its loads changed: the search was not exercised"


def test_regrouping_replays() -> None:
    _, prep, run, groups = _run(150, 1)
    first = rechoose(prep, run.el, run.free, groups, budget=200)
    again = rechoose(prep, run.el, run.free, [(list(ms), list(members)) for ms, members in groups], budget=200)
    assert first == again


def test_no_budget_leaves_the_loads_to_the_reassignment_alone() -> None:
    for seed in range(3):
        _, prep, run, groups = _run(150, seed)
        out = rechoose(prep, run.el, run.free, groups, budget=0)
        if out is not None:
            assert Counter(ms[0] for ms, _ in out) >= Counter(ms[0] for ms, _ in groups), seed


def test_the_load_flow_bounds_the_groups_fit_at_their_loads_and_dealing_keeps_sizes_and_departments() -> None:
    for seed in range(3):
        _, prep, run, groups = _run(150, seed)
        pol = prep.policy
        g, own = loads_of(groups, len(prep.mentor_ids))
        people = sorted(own)
        shape = Shape(
            pol.group_members_min, pol.group_members_max, {p: prep.by_id[p].department for p in people},
            [prep.by_id[m].department for m in prep.mentor_ids], pol.max_same_department,
        )  # fmt: skip
        flow = LoadFlow(run.el, people, own, g, shape)
        value = flow.value(g)
        assert value is not None and value >= total_fit(run.el, groups), seed
        mentor, _ = flow.placed_fit()
        for (k,), members in deal(people, mentor, g, shape):
            assert pol.group_members_min <= len(members) <= pol.group_members_max, seed
            depts = Counter(prep.by_id[p].department for p in members)
            depts[prep.by_id[prep.mentor_ids[k]].department] += 1
            assert max(depts.values()) <= (pol.max_same_department or len(members)), seed


def test_a_one_dept_run_replays_and_validates() -> None:
    """600 mentees: the path without CP-SAT's fit levels, where the search runs at the end of the finish."""
    inp = _one_dept(600, 3)
    inp = inp.model_copy(update={"policy": inp.policy.model_copy(update={"time_limit_seconds": 3.0})})
    first, again = match(inp, 11), match(inp, 11)
    assert validate(inp, first) == []
    assert [g.members for g in first.groups] == [g.members for g in again.groups]


def test_past_the_clock_the_groups_stay_as_they_were() -> None:
    """The wall clock is only a safety net: a search or a reassignment it would cut leaves the groups of the
    stage before (None), never half-searched ones."""
    _, prep, run, groups = _run(150, 1)
    assert rechoose(prep, run.el, run.free, groups, budget=200, changed=False, stop_at=0.0) is None
    assert rechoose(prep, run.el, run.free, groups, budget=200, deadline=0.0) is None
