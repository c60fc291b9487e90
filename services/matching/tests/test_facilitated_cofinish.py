"""The last steps of facilitated groups with co-facilitators (``facilitated_fill.finish``): the fill puts
back someone who fits a group as it stands, the lottery pass gives a later-drawn member's place to
someone drawn earlier, and an idle mentor takes the place of a mentor in two groups; every rule holds."""

from __future__ import annotations

from collections import Counter

from bench.probes.group_probe import fac, group_ok
from bench.synthetic_pool import instance
from contracts.policy import Form, Role
from services.matching.domain import MatchingInput, match, validate
from services.matching.domain.common import NamedGroup, Prepared
from services.matching.domain.facilitated import _prepare
from services.matching.domain.facilitated_fill import finish
from services.matching.domain.facilitated_run import FacilitatedRun


def _run(seed: int) -> tuple[MatchingInput, Prepared, FacilitatedRun]:
    base = instance(60, Form.FACILITATED_GROUP, seed=seed)
    policy = {"mentors_per_group": 2, "group_members_min": 2, "group_members_max": 4}
    inp = base.model_copy(update={"policy": base.policy.model_copy(update=policy)})
    prep = Prepared.of(inp, 7)
    return inp, prep, _prepare(prep, 30.0)


def _placed(groups: list[NamedGroup]) -> int:
    return sum(len(members) for _, members in groups)


def _all_ok(inp: MatchingInput, groups: list[NamedGroup]) -> bool:
    by_id = {p.participant_id: p for p in inp.participants}
    return all(group_ok(inp, by_id, mentors, members) for mentors, members in groups)


def test_the_fill_puts_back_someone_who_fits_a_group_as_it_stands() -> None:
    inp, prep, run = _run(1)
    groups = run.greedy_by_id()
    g = next(k for k, (_, members) in enumerate(groups) if len(members) >= 3)
    out_one = groups[g][1][-1]
    groups[g] = (groups[g][0], groups[g][1][:-1])
    out = finish(prep, run.el, run.free, groups, bound=_placed(groups) + 1)
    assert (_placed(out.groups), out.filled) == (_placed(groups) + 1, 1)
    assert any(out_one in members for _, members in out.groups)
    assert _all_ok(inp, out.groups)


def test_the_lottery_pass_gives_a_later_drawn_place_back_to_someone_drawn_earlier() -> None:
    """The earliest-drawn member of a group of three or more is taken out (the group of two stays valid) and the
    bound set to what is left, so the fill adds nobody; the pass gives that person a later-drawn member's
    place: placed stays, every rule holds."""
    inp, prep, run = _run(2)
    groups = run.greedy_by_id()
    g = next(k for k, (_, members) in enumerate(groups) if len(members) >= 3)
    out_one = min(groups[g][1], key=prep.ranks.__getitem__)
    groups[g] = (groups[g][0], [p for p in groups[g][1] if p != out_one])
    out = finish(prep, run.el, run.free, groups, bound=_placed(groups))
    assert (_placed(out.groups), out.filled) == (_placed(groups), 0)
    assert out.swapped >= 1
    assert any(out_one in members for _, members in out.groups)
    assert _all_ok(inp, out.groups)


def test_no_idle_mentor_could_take_the_place_of_a_mentor_in_two_groups() -> None:
    """Fair load (b) with two mentors per group: an outside-in probe found, on a 1,000-mentee pool, 36
    eligible mentors with room idle and 140 of 170 groups where one of them could have taken, as the
    group stood, the place of a mentor in two groups (within the run's max load ratio)."""
    inp = fac(1_000, 21, mentors_per_group=2, group_members_min=2, group_members_max=6)
    result = match(inp, 4242)
    assert validate(inp, result) == []
    by_id = {p.participant_id: p for p in inp.participants}
    groups = [
        ([m.participant_id for m in g.members if m.role is Role.MENTOR],
         [m.participant_id for m in g.members if m.role is not Role.MENTOR])
        for g in result.groups
    ]  # fmt: skip
    count = Counter(m for mentors, _ in groups for m in mentors)
    top = result.stats.max_load_ratio
    idle = [
        p.participant_id
        for p in inp.participants
        if p.role is Role.MENTOR
        and p.participant_id not in count
        and inp.existing_load.get(p.participant_id, 0) < (p.capacity or 0)
        and (inp.existing_load.get(p.participant_id, 0) + 1) / (p.capacity or 1) <= top + 1e-6
    ]
    takeovers = [
        f"idle {i} could take the place of {m} (in {count[m]} groups)"
        for mentors, members in groups
        for j, m in enumerate(mentors)
        if count[m] >= 2
        for i in idle
        if group_ok(inp, by_id, [*mentors[:j], i, *mentors[j + 1 :]], members)
    ]
    assert takeovers[:3] == []
