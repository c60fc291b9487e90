"""Placing more than the greedy: chains of moves between facilitated groups keep every rule, never place
fewer, and place the mentee a one-step greedy cannot."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from contracts.policy import Form, Role
from services.matching.domain import match
from services.matching.domain.common import Prepared, apart_pairs
from services.matching.domain.facilitated_prep import Eligibility, eligibility
from services.matching.domain.facilitated_repair import MentorGroup, place_more
from services.matching.domain.group_greedy import greedy_facilitated
from services.matching.domain.rules import PairRules, Pool
from services.matching.tests.factories import mentor, person, pool


def _prepare(prep: Prepared) -> tuple[Eligibility, np.ndarray]:
    free = np.array([prep.free(pid) for pid in prep.mentor_ids], dtype=np.int64)
    rules = PairRules(Pool.encode(prep.people), prep.policy, np.array(prep.mentors, dtype=np.int64))
    return eligibility(prep, rules, free), free


def _broken(prep: Prepared, el: Eligibility, free: np.ndarray, groups: list[MentorGroup]) -> list[str]:
    """Every rule of the groups, checked here without the repair's own bookkeeping."""
    pol = prep.policy
    out: list[str] = []
    seen = Counter(pid for _, members in groups for pid in members)
    out += [f"{pid} in two groups" for pid, n in seen.items() if n > 1]
    used = Counter(ms[0] for ms, _ in groups)
    out += [f"mentor {k} over capacity" for k, n in used.items() if n > free[k]]
    apart = {frozenset(pair) for pair in apart_pairs(prep, el.seekers)}
    for ms, members in groups:
        k = ms[0]
        if not pol.group_members_min <= len(members) <= pol.group_members_max:
            out.append(f"group of {k} has {len(members)}")
        out += [f"{pid} not eligible for {k}" for pid in members if not el.eligible[el.row[pid], k]]
        out += [f"{a}/{b} apart" for a in members for b in members if a < b and frozenset((a, b)) in apart]
        if pol.max_same_department is not None:
            depts = Counter([prep.by_id[prep.mentor_ids[k]].department, *(prep.by_id[p].department for p in members)])
            if max(depts.values()) > pol.max_same_department:
                out.append(f"group of {k}: department bound")
    return out


def test_a_chain_moves_a_member_to_a_new_group_to_make_room() -> None:
    """Groups of exactly two. R speaks only English, and A's group (P, Q) is its only option; P speaks
    Italian, which A and the idle mentor B both speak; S, left out, speaks only German, like B. Moving
    P into a new group with B and S lets R take P's place: everyone is placed. No single join could."""
    people = [
        mentor("A", languages=["en", "it"], capacity=1),
        mentor("B", languages=["de", "it"], capacity=1),
        person("P", languages=["it"]),
        person("Q", languages=["en"]),
        person("R", languages=["en"]),
        person("S", languages=["de"]),
    ]
    inp = pool(people, Form.FACILITATED_GROUP, group_members_min=2, group_members_max=2)
    prep = Prepared.of(inp, 1)
    el, free = _prepare(prep)
    a = prep.mentor_ids.index("A")
    b = prep.mentor_ids.index("B")
    assert not el.eligible[el.row["S"], a] and not el.eligible[el.row["R"], b]  # the set-up
    groups = place_more(prep, el, free, [([a], ["P", "Q"])], want=4)
    assert sorted((ms[0], sorted(members)) for ms, members in groups) == [(a, ["Q", "R"]), (b, ["P", "S"])]
    assert _broken(prep, el, free, groups) == []


@pytest.mark.parametrize("seed", range(12))
def test_chains_keep_every_rule_and_never_place_fewer(seed: int) -> None:
    """Synthetic pools under the tight rules (one member of a department per group, time zones within
    3 h, conflicts): after the greedy, the chains keep every rule, place at least as many and, on these
    pools, as many as the exact model proves the most (the greedy alone: one fewer on one pool)."""
    from bench.synthetic_pool import instance

    base = instance(40, Form.FACILITATED_GROUP, seed=seed, conflicts=0.2)
    people = [p.model_copy(update={"capacity": 1}) if p.role is Role.MENTOR else p for p in base.participants]
    policy = base.policy.model_copy(
        update={
            "group_members_min": 2,
            "group_members_max": 4,
            "max_same_department": 1,
            "max_timezone_distance_hours": 3.0,
        }
    )
    inp = base.model_copy(update={"participants": people, "policy": policy})
    prep = Prepared.of(inp, seed)
    el, free = _prepare(prep)
    seeking = {pid: el.eligible[el.row[pid]] for pid in el.active}
    greedy = greedy_facilitated(prep, seeking, el.fit_of, free)
    before = sum(len(m) for _, m in greedy)
    groups = place_more(prep, el, free, greedy, want=len(el.active))
    assert _broken(prep, el, free, greedy) == []  # the oracle agrees with the greedy
    assert _broken(prep, el, free, groups) == []
    assert sum(len(m) for _, m in groups) >= before
    exact = match(inp, seed)  # small pools: every eligible pair in the model, placed proven optimal
    assert exact.stats.status == "OPTIMAL"
    assert sum(len(m) for _, m in groups) == exact.stats.placed_count


def test_two_left_out_open_a_group_with_an_idle_mentor() -> None:
    """No group at all yet: a mentee left out opens one with the idle mentor and another mentee left out."""
    people = [mentor("A", capacity=1), person("P"), person("Q")]
    prep = Prepared.of(pool(people, Form.FACILITATED_GROUP, group_members_min=2, group_members_max=3), 1)
    el, free = _prepare(prep)
    groups = place_more(prep, el, free, [], want=2)
    assert [(ms, sorted(members)) for ms, members in groups] == [([0], ["P", "Q"])]


def test_no_group_of_two_is_opened_where_the_minimum_is_three() -> None:
    """The same two left out, but groups of 3..8 (the facilitated default): a chain may not open a group
    of two, so nothing is placed."""
    people = [mentor("A", capacity=1), person("P"), person("Q")]
    prep = Prepared.of(pool(people, Form.FACILITATED_GROUP, group_members_min=3, group_members_max=8), 1)
    el, free = _prepare(prep)
    assert place_more(prep, el, free, [], want=2) == []


@pytest.mark.parametrize("seed", range(6))
def test_chains_keep_the_group_minimum_on_pools_above_two(seed: int) -> None:
    """Groups of 3..5 under the tight rules: the chains keep every rule, the minimum included."""
    from bench.synthetic_pool import instance

    base = instance(40, Form.FACILITATED_GROUP, seed=seed, conflicts=0.2)
    people = [p.model_copy(update={"capacity": 1}) if p.role is Role.MENTOR else p for p in base.participants]
    policy = base.policy.model_copy(update={"group_members_min": 3, "group_members_max": 5, "max_same_department": 1})
    inp = base.model_copy(update={"participants": people, "policy": policy})
    prep = Prepared.of(inp, seed)
    el, free = _prepare(prep)
    seeking = {pid: el.eligible[el.row[pid]] for pid in el.active}
    greedy = greedy_facilitated(prep, seeking, el.fit_of, free)
    groups = place_more(prep, el, free, greedy, want=len(el.active))
    assert _broken(prep, el, free, groups) == []
    assert sum(len(m) for _, m in groups) >= sum(len(m) for _, m in greedy)


def test_settle_searches_past_a_met_bound_for_the_lottery_only() -> None:
    """One mentor, one group of exactly two, three mentees: two is the most anyone can place. The greedy's
    group holds the two drawn last; the first drawn is left out. Stopping at the bound keeps that group;
    ``settle`` (a department LP's bound) still searches the one left out, whose chain takes the place of
    the last drawn: placed stays two, now the first two drawn."""
    people = [mentor("A", capacity=1), person("P"), person("Q"), person("R")]
    prep = Prepared.of(pool(people, Form.FACILITATED_GROUP, group_members_min=2, group_members_max=2), 3)
    el, free = _prepare(prep)
    first, second, last = sorted(["P", "Q", "R"], key=lambda pid: prep.ranks[pid])
    greedy: list[MentorGroup] = [([0], [second, last])]
    assert place_more(prep, el, free, greedy, want=2) == greedy
    settled = place_more(prep, el, free, [([0], [second, last])], want=2, settle=True)
    assert [sorted(members) for _, members in settled] == [sorted([first, second])]
    assert _broken(prep, el, free, settled) == []
