"""Every unplaced reason is true of the instance: one pool per form and reason code, built to produce it,
and the reason's text checked against what the pool holds."""

from __future__ import annotations

from typing import Any

from contracts.events import ParticipantProfile, UnmatchedReason
from contracts.policy import Form, Role
from services.matching.domain import MatchingInput, MatchingResult, match, validate
from services.matching.tests.factories import mentor, person, pool

NO_ELIGIBLE = UnmatchedReason.NO_ELIGIBLE_PARTNER
CAPACITY = UnmatchedReason.CAPACITY_EXHAUSTED
LOTTERY = UnmatchedReason.LOST_LOTTERY
SIZE = UnmatchedReason.GROUP_SIZE
OTHER = UnmatchedReason.OTHER


def solve(inp: MatchingInput, seed: int = 1) -> MatchingResult:
    result = match(inp, seed, time_limit_s=5)
    assert validate(inp, result) == []
    return result


def reasons(result: MatchingResult) -> dict[str, tuple[UnmatchedReason, str]]:
    return {u.participant_id: (u.reason_code, u.reason) for u in result.unplaced}


# facilitated groups --------------------------------------------------------------------------------


def facilitated(people: list[ParticipantProfile], **policy: Any) -> MatchingInput:
    settings: dict[str, Any] = {"group_members_min": 1, "group_members_max": 2, **policy}
    return pool(people, form=Form.FACILITATED_GROUP, **settings)


def test_facilitated_no_eligible_mentor_names_the_rule_that_excludes() -> None:
    result = solve(facilitated([mentor("M", languages=["en"]), person("a", languages=["fr"])]))
    code, text = reasons(result)["a"]
    assert code is NO_ELIGIBLE and "shared language excludes 1" in text and "conflict" not in text


def test_facilitated_capacity_exhausted_when_every_eligible_mentor_is_full() -> None:
    result = solve(facilitated([mentor("M", capacity=1), person("a")], load={"M": 1}))
    assert reasons(result)["a"][0] is CAPACITY and "all 1 eligible mentors are full" in reasons(result)["a"][1]


def test_facilitated_lost_lottery_counts_the_people_drawn_ahead() -> None:
    people = [mentor("M", capacity=1), person("a"), person("b"), person("c")]
    result = solve(facilitated(people))
    (loser,) = reasons(result)
    code, text = reasons(result)[loser]
    assert code is LOTTERY and "lost the lottery to 2 " in text
    assert all(result.lottery[p] < result.lottery[loser] for p in "abc" if p != loser)


def test_facilitated_group_size_when_too_few_for_a_group_and_nobody_ahead_competed() -> None:
    result = solve(facilitated([mentor("M"), person("a"), person("b")], group_members_min=3, group_members_max=4))
    assert {code for code, _ in reasons(result).values()} == {SIZE}


# peer groups ---------------------------------------------------------------------------------------


def peers(people: list[ParticipantProfile], **policy: Any) -> MatchingInput:
    settings: dict[str, Any] = {"group_members_min": 3, "group_members_max": 3, **policy}
    return pool(people, form=Form.PEER_GROUP, **settings)


def peer(pid: str, **kw: object) -> ParticipantProfile:
    return person(pid, Role.PEER, **{"level": 3, "department": f"D-{pid}", **kw})


def test_a_peer_is_never_its_own_declared_conflict() -> None:
    """The reason used to read "declared conflict excludes 1" with no conflict declared: the peer itself."""
    people = [peer(f"p{i}") for i in range(3)] + [peer("x", languages=["ja"])]
    result = solve(peers(people))
    code, text = reasons(result)["x"]
    assert code is NO_ELIGIBLE
    assert "declared conflict" not in text and "shared language excludes 3" in text, text


def test_a_peer_with_a_declared_conflict_is_told_so() -> None:
    people = [peer("a", conflicts_with=["b"]), peer("b"), peer("c", languages=["ja"])]
    code, text = reasons(solve(peers(people)))["a"]
    assert code is NO_ELIGIBLE and "declared conflict excludes 1" in text and "shared language excludes 1" in text


def test_peers_lost_lottery_when_compatible_peers_drawn_ahead_took_the_places() -> None:
    result = solve(peers([peer(f"p{i}") for i in range(4)]))
    (loser,) = reasons(result)
    code, text = reasons(result)[loser]
    assert code is LOTTERY and "lost the lottery to 3 " in text


def test_peers_group_size_when_every_pair_is_compatible_but_no_three_share_a_language() -> None:
    people = [peer("a", languages=["en", "fr"]), peer("b", languages=["fr", "de"]), peer("c", languages=["de", "en"])]
    result = solve(peers(people))
    assert {code for code, _ in reasons(result).values()} == {SIZE}


# teams ---------------------------------------------------------------------------------------------


def teams(people: list[ParticipantProfile], **policy: Any) -> MatchingInput:
    settings: dict[str, Any] = {"mentors_per_group": 2, "group_members_min": 1, **policy}
    return pool(people, form=Form.TEAM, **settings)


def test_a_team_that_cannot_be_placed_even_alone_is_not_told_larger_teams_took_its_mentors() -> None:
    """T1's only eligible mentors M1 and M2 have a declared conflict: T1 can never have two mentors,
    whatever the larger T2 does. It used to read "went to 1 larger teams"."""
    people = [
        mentor("M1", capacity=1, languages=["en", "fr"], conflicts_with=["M2"]),
        mentor("M2", capacity=1, languages=["en", "fr"]),
        mentor("M3", capacity=1, languages=["en"]),
    ]
    people += [person(f"t2{i}", team_id="T2", languages=["en"]) for i in range(3)]
    people += [person(f"t1{i}", team_id="T1", languages=["fr"]) for i in range(2)]
    result = solve(teams(people))
    code, text = reasons(result)["t10"]
    assert code is OTHER and "may work together" in text and "larger" not in text


def test_a_team_losing_its_mentors_to_a_larger_team_is_told_so() -> None:
    people = [mentor("M1", capacity=1), mentor("M2", capacity=1)]
    people += [person(f"t2{i}", team_id="T2") for i in range(3)] + [person(f"t1{i}", team_id="T1") for i in range(2)]
    code, text = reasons(solve(teams(people)))["t10"]
    assert code is CAPACITY and "1 larger teams" in text


def test_teams_of_one_size_lose_the_lottery_to_the_team_drawn_ahead() -> None:
    people = [mentor("M1", capacity=1), mentor("M2", capacity=1)]
    people += [person(f"a{i}", team_id="A") for i in range(2)] + [person(f"b{i}", team_id="B") for i in range(2)]
    result = solve(teams(people))
    assert {code for code, _ in reasons(result).values()} == {LOTTERY}


def test_a_team_with_no_eligible_mentors_names_the_rule() -> None:
    people = [mentor("M1"), mentor("M2")] + [person(f"j{i}", team_id="J", languages=["ja"]) for i in range(2)]
    code, text = reasons(solve(teams(people)))["j0"]
    assert code is NO_ELIGIBLE and "shared language excludes 2" in text


def test_a_team_whose_eligible_mentors_are_full_is_capacity_exhausted() -> None:
    people = [mentor("M1", capacity=1), mentor("M2", capacity=1)] + [person(f"t{i}", team_id="T") for i in range(2)]
    code, text = reasons(solve(teams(people, load={"M1": 1, "M2": 1})))["t0"]
    assert code is CAPACITY and "2 mentors are eligible" in text


def test_a_team_of_the_wrong_size_is_group_size() -> None:
    people = [mentor("M1"), mentor("M2")] + [person(f"t{i}", team_id="T") for i in range(3)]
    code, text = reasons(solve(teams(people, group_members_max=2)))["t0"]
    assert code is SIZE and "has 3 members" in text


def test_a_team_with_an_internal_conflict_is_other() -> None:
    people = [mentor("M1"), mentor("M2"), person("t0", team_id="T", conflicts_with=["t1"]), person("t1", team_id="T")]
    code, text = reasons(solve(teams(people)))["t0"]
    assert code is OTHER and "t0 and t1" in text


def test_a_team_losing_to_smaller_teams_that_place_more_people_together_is_told_so() -> None:
    """A (3 people) can only have M1 and M2; B (2) needs M1 and M3, C (2) needs M2 and M4. Placing A
    blocks both, so B and C (4 people) beat A (3) whatever the draw. A seed where B is drawn after A:
    A's reason must name the first level, not the lottery, and never a rule between its mentors (the
    reason used to read "no 2 eligible mentors with room may work together")."""
    from services.matching.domain.lottery import lottery_key

    people = [
        mentor("M1", capacity=1, languages=["en", "fr"]),
        mentor("M2", capacity=1, languages=["en", "de"]),
        mentor("M3", capacity=1, languages=["fr"]),
        mentor("M4", capacity=1, languages=["de"]),
    ]
    people += [person(f"a{i}", team_id="A", languages=["en"]) for i in range(3)]
    people += [person(f"b{i}", team_id="B", languages=["fr"]) for i in range(2)]
    people += [person(f"c{i}", team_id="C", languages=["de"]) for i in range(2)]
    seed = next(s for s in range(100) if lottery_key(s, "team:A") < lottery_key(s, "team:B"))
    result = solve(teams(people), seed=seed)
    assert result.stats.placed_count == 4
    code, text = reasons(result)["a0"]
    assert code is CAPACITY and "place more people" in text and "drawn after it" in text, text
    assert "work together" not in text and "lottery to" not in text
