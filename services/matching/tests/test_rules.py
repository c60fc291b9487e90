"""Each hard rule on its own: the smallest pool that shows it, solved, then checked by the validator."""

from __future__ import annotations

import pytest

from contracts.events import FitContribution, UnmatchedReason
from contracts.policy import Form, Role, SeniorityRule
from services.matching.domain import MatchingInput, MatchingResult, Override, OverrideKind, match, validate
from services.matching.domain.common import Prepared, make_group
from services.matching.domain.rules import _contribution
from services.matching.tests.factories import mentor, person, pool


def solve(inp: MatchingInput, seed: int = 1) -> MatchingResult:
    result = match(inp, seed, time_limit_s=10)
    assert validate(inp, result) == []
    return result


def pairs(result: MatchingResult) -> set[tuple[str, str]]:
    out = set()
    for g in result.groups:
        mentors = [m.participant_id for m in g.members if m.role is Role.MENTOR]
        for m in g.members:
            if m.role is not Role.MENTOR:
                out.add((mentors[0] if mentors else "", m.participant_id))
    return out


def reason(result: MatchingResult, pid: str) -> UnmatchedReason:
    return next(u.reason_code for u in result.unplaced if u.participant_id == pid)


def test_capacity_is_never_exceeded_counting_other_programs() -> None:
    inp = pool([mentor("M", capacity=3), person("a"), person("b"), person("c")], load={"M": 2})
    result = solve(inp)
    assert result.stats.placed_count == 1
    assert result.stats.load["M"] == 3


def test_a_full_mentor_means_capacity_exhausted() -> None:
    result = solve(pool([mentor("M", capacity=1), person("a")], load={"M": 1}))
    assert reason(result, "a") is UnmatchedReason.CAPACITY_EXHAUSTED


def test_reporting_line_keeps_manager_and_report_apart_in_both_directions() -> None:
    boss = mentor("M", capacity=2)
    report = person("a", manager_chain=["X", "M"])  # M is two levels up
    result = solve(pool([boss, report], reporting_line_depth=2))
    assert result.stats.placed_count == 0
    assert reason(result, "a") is UnmatchedReason.NO_ELIGIBLE_PARTNER
    assert "reporting line" in result.unplaced[0].reason
    result = solve(pool([boss, report], reporting_line_depth=1))  # beyond the policy's depth: allowed
    assert result.stats.placed_count == 1
    senior_report = mentor("M2", manager_chain=["a"])  # the mentee manages the mentor
    result = solve(pool([senior_report, person("a", level=1)], seniority_rule=SeniorityRule.NONE))
    assert result.stats.placed_count == 0


def test_declared_conflicts_hold_both_ways() -> None:
    result = solve(pool([mentor("M"), person("a", conflicts_with=["M"])]))
    assert result.stats.placed_count == 0
    result = solve(pool([mentor("M", conflicts_with=["a"]), person("a")]))
    assert result.stats.placed_count == 0


@pytest.mark.parametrize(
    ("mentee", "policy", "rule"),
    [
        (person("a", languages=["fr"]), {}, "shared language"),
        (person("a", utc_offset_minutes=60 + 7 * 60), {"max_timezone_distance_hours": 6}, "time zone"),
        (person("a", level=6), {}, "seniority"),
        (person("a", department="Finance"), {"max_same_department": 1}, "department"),
    ],
)
def test_each_compatibility_rule_excludes_and_is_named(mentee, policy, rule) -> None:  # type: ignore[no-untyped-def]
    result = solve(pool([mentor("M"), mentee], **policy))
    assert result.stats.placed_count == 0
    assert rule in result.unplaced[0].reason


def test_reverse_mentoring_has_the_junior_mentor_the_senior() -> None:
    inp = pool([mentor("J", level=2), person("S", level=7)], form=Form.REVERSE)
    assert solve(inp).stats.placed_count == 1
    inp = pool([mentor("J", level=7), person("S", level=2)], form=Form.REVERSE)
    assert solve(inp).stats.placed_count == 0


def test_overrides_lock_and_exclude_pairs_and_are_counted() -> None:
    people = [mentor("M1", capacity=1), mentor("M2", capacity=1), person("a"), person("b")]
    lock = Override(kind=OverrideKind.LOCK_PAIR, participant_ids=("M2", "a"), reason="continuity from 2025")
    result = solve(pool(people, overrides=[lock]))
    assert ("M2", "a") in pairs(result)
    assert result.stats.overrides_applied == 1
    exclude = Override(kind=OverrideKind.EXCLUDE_PAIR, participant_ids=("M1", "a"), reason="competing for a role")
    result = solve(pool(people, overrides=[exclude]))
    assert ("M1", "a") not in pairs(result)


def test_fair_load_no_mentor_overloaded_while_another_is_idle() -> None:
    people = [mentor("M1", capacity=4), mentor("M2", capacity=4)] + [person(f"m{i}") for i in range(4)]
    result = solve(pool(people))
    assert sorted(result.stats.load.values()) == [2, 2]
    assert result.stats.max_load_ratio == 0.5


def test_fit_decides_grouping_and_is_explained() -> None:
    people = [
        mentor("M1", skills_offered=["negotiation"], capacity=1),
        mentor("M2", skills_offered=["sql"], capacity=1),
        person("a", skills_sought=["negotiation"], goals=["promotion"]),
        person("b", skills_sought=["sql"]),
    ]
    result = solve(pool(people, max_same_department=None))
    assert pairs(result) == {("M1", "a"), ("M2", "b")}
    group = next(g for g in result.groups if any(m.participant_id == "a" for m in g.members))
    details = [(c.criterion, c.points, c.detail) for c in group.explanation]
    assert ("skill", 3.0, "negotiation sought by a, offered by M1") in details


def test_facilitated_groups_respect_size_department_and_member_conflicts() -> None:
    people = [mentor("M", capacity=2, department="Legal")]
    people += [person(f"f{i}", department="Finance") for i in range(4)]
    people += [person(f"s{i}", department="Sales") for i in range(4)]
    people.append(person("x", department="Sales", conflicts_with=["s0"]))
    inp = pool(people, form=Form.FACILITATED_GROUP, group_members_min=3, group_members_max=4, max_same_department=2)
    result = solve(inp)
    assert result.stats.placed_count == 8
    for g in result.groups:
        assert 3 <= len(g.members) - 1 <= 4


def test_peer_groups_share_a_language_and_a_time_window() -> None:
    people = [person(f"e{i}", role=Role.PEER, languages=["en"], utc_offset_minutes=0) for i in range(3)]
    people += [person(f"j{i}", role=Role.PEER, languages=["ja"], utc_offset_minutes=540) for i in range(3)]
    inp = pool(people, form=Form.PEER_GROUP, group_members_min=3, group_members_max=6, max_same_department=None)
    result = solve(inp)
    assert result.stats.placed_count == 6
    assert sorted(sorted(m.participant_id[0] for m in g.members) for g in result.groups) == [["e"] * 3, ["j"] * 3]


def test_the_oracle_wants_one_language_for_a_whole_peer_group_not_one_per_pair() -> None:
    """en+fr, fr+de and de+en: each pair shares a language, the three share none (validate checked pairs only)."""
    people = [
        person(pid, role=Role.PEER, languages=langs)
        for pid, langs in (("a", ["en", "fr"]), ("b", ["fr", "de"]), ("c", ["de", "en"]))
    ]
    inp = pool(people, form=Form.PEER_GROUP, group_members_min=3, group_members_max=3, max_same_department=None)
    result = solve(inp)
    assert result.stats.placed_count == 0, "no group of the three may form"
    forced = result.model_copy(
        update={"groups": [make_group(Prepared.of(inp, 1), [], ["a", "b", "c"])], "unplaced": []}
    )
    assert validate(inp, forced) == [f"{forced.groups[0].group_id}: no language all its members speak"]


def test_teams_are_placed_whole_with_their_mentors() -> None:
    people = [mentor("L1", capacity=1, department="Legal"), mentor("L2", capacity=1, department="Tax")]
    people += [person(f"t{i}", team_id="T1") for i in range(3)]
    inp = pool(people, form=Form.TEAM, group_members_min=2, group_members_max=10)
    result = solve(inp)
    assert len(result.groups) == 1
    assert sorted(m.role.value for m in result.groups[0].members) == ["mentee"] * 3 + ["mentor"] * 2


def test_a_team_mentor_comes_from_outside_the_teams_department_when_one_per_department() -> None:
    """The team itself is all Finance; with one member per department the mentors must come from
    elsewhere, and the validator flags a grouping that breaks it."""
    people = [mentor("F1", capacity=1), mentor("L1", capacity=1, department="Legal")]
    people += [mentor("T1", capacity=1, department="Tax")]
    people += [person(f"t{i}", team_id="T1") for i in range(3)]
    inp = pool(people, form=Form.TEAM, group_members_min=2, group_members_max=10, max_same_department=1)
    result = solve(inp)
    mentors = {m.participant_id for m in result.groups[0].members if m.role is Role.MENTOR}
    assert mentors == {"L1", "T1"}
    group = result.groups[0]
    swapped = [  # Tax's place taken by the Finance mentor
        m.model_copy(update={"participant_id": "F1"}) if m.participant_id == "T1" else m for m in group.members
    ]
    broken = group.model_copy(update={"members": swapped})
    problems = validate(inp, result.model_copy(update={"groups": [broken]}))
    assert problems == [f"{group.group_id}: mentor F1 is from Finance, a department of the team (max 1 per department)"]


def test_facilitated_groups_with_co_facilitators_keep_every_mentor_rule() -> None:
    """Two mentors per group: both eligible for every member, never in each other's reporting line,
    and each co-facilitated group counts against both mentors' capacity."""
    people = [
        mentor("M1", capacity=1, languages=["en"], department="Legal"),
        mentor("M2", capacity=1, languages=["en", "fr"], department="Tax", manager_chain=["M1"]),
        mentor("M3", capacity=1, languages=["en", "fr"], department="Risk"),
        mentor("M4", capacity=1, languages=["fr"], department="Audit"),
    ]
    people += [person(f"e{i}", languages=["en"], department=f"D{i}") for i in range(3)]
    people += [person(f"f{i}", languages=["fr"], department=f"D{i}") for i in range(3)]
    inp = pool(
        people,
        form=Form.FACILITATED_GROUP,
        mentors_per_group=2,
        group_members_min=3,
        group_members_max=3,
        max_same_department=None,
    )
    result = solve(inp)
    assert result.stats.placed_count == 6
    rosters = sorted(
        (sorted(m.participant_id for m in g.members if m.role is Role.MENTOR),
         sorted(m.participant_id for m in g.members if m.role is not Role.MENTOR))
        for g in result.groups
    )  # fmt: skip
    # English speakers need two English-speaking mentors not in one reporting line: M1 and M3;
    # French speakers then get M2 and M4.
    assert rosters == [(["M1", "M3"], ["e0", "e1", "e2"]), (["M2", "M4"], ["f0", "f1", "f2"])]
    assert result.stats.load == {"M1": 1, "M2": 1, "M3": 1, "M4": 1}
    group = next(g for g in result.groups if any(m.participant_id == "M3" for m in g.members))
    details = {c.detail for c in group.explanation}
    assert "cross-department Risk / D0 (M3, e0)" in details, "each co-facilitator's fit is explained"
    assert "cross-department Legal / D0 (M1, e0)" in details
    assert group.fit == 6.0


def test_a_fit_contribution_is_the_instance_model_construct_makes() -> None:
    """``pair_fit`` builds its explanation without pydantic's generic ``model_construct`` (a hot path at
    50,000 mentees): every attribute pydantic keeps must be the same, and so must equality and dumps."""
    made = _contribution("skill", 2.0, "negotiation sought by m1, offered by M7")
    reference = FitContribution.model_construct(criterion="skill", points=2.0, detail=made.detail)
    for attribute in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__"):
        assert getattr(made, attribute) == getattr(reference, attribute)
    assert made == reference
    assert made.model_dump_json() == reference.model_dump_json()
    assert FitContribution.model_validate(made.model_dump()) == made
