"""The last steps of every facilitated path (``facilitated_fill``): the fill opens a group with an idle
mentor for people left out, and keeps every rule; the lottery pass never lowers placed."""

from __future__ import annotations

from bench.probes.group_probe import group_ok
from bench.synthetic_pool import instance
from contracts.policy import Form
from services.matching.domain import MatchingInput
from services.matching.domain.common import NamedGroup, Prepared
from services.matching.domain.facilitated import _prepare
from services.matching.domain.facilitated_fill import finish
from services.matching.domain.facilitated_run import FacilitatedRun


def _run(seed: int, smallest: int = 3) -> tuple[MatchingInput, Prepared, FacilitatedRun]:
    base = instance(60, Form.FACILITATED_GROUP, seed=seed)
    # groups of exactly three: a group as it stands never has room, so only a new group can take anyone
    inp = base.model_copy(update={"policy": base.policy.model_copy(update={"group_members_min": smallest,
                                                                            "group_members_max": 3})})  # fmt: skip
    prep = Prepared.of(inp, 7)
    return inp, prep, _prepare(prep, 30.0)


def _placed(groups: list[NamedGroup]) -> int:
    return sum(len(members) for _, members in groups)


def test_the_fill_opens_a_group_with_an_idle_mentor_for_people_left_out() -> None:
    for seed in range(3):
        inp, prep, run = _run(seed)
        groups = run.greedy_by_id()
        dropped = groups[0]
        out = finish(prep, run.el, run.free, groups[1:], bound=_placed(groups))
        by_id = {p.participant_id: p for p in inp.participants}
        assert _placed(out.groups) == _placed(groups), (seed, dropped)
        assert out.filled == len(dropped[1])
        assert all(group_ok(inp, by_id, mentors, members) for mentors, members in out.groups)


def test_the_lottery_pass_gives_a_later_drawn_place_back_to_someone_drawn_earlier() -> None:
    """Groups of 2-3: the earliest-drawn member of a group of three is taken out (the group of two stays
    valid) and the bound set to what is left, so the fill does nothing; the pass gives that person the
    place of a later-drawn member of its old group: placed stays, every rule holds."""
    inp, prep, run = _run(5, smallest=2)
    groups = run.greedy_by_id()
    g = next(k for k, (_, members) in enumerate(groups) if len(members) == 3)
    out_one = min(groups[g][1], key=prep.ranks.__getitem__)
    groups[g] = (groups[g][0], [p for p in groups[g][1] if p != out_one])
    out = finish(prep, run.el, run.free, groups, bound=_placed(groups))
    by_id = {p.participant_id: p for p in inp.participants}
    assert (_placed(out.groups), out.filled) == (_placed(groups), 0)
    assert out.swapped >= 1
    assert any(out_one in members for _, members in out.groups)
    assert all(group_ok(inp, by_id, mentors, members) for mentors, members in out.groups)
