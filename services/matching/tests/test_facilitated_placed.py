"""Level 1 of facilitated groups: a placement the greedy's hint already proves is kept, not solved."""

from __future__ import annotations

from contracts.policy import Form
from services.matching.domain import match, validate
from services.matching.tests.factories import mentor, person, pool


def test_a_placement_the_hint_proves_is_kept_without_a_solve() -> None:
    """Two mentors of two groups each and seven mentees of seven departments in groups of 2-3: the
    greedy places all seven, the placement bound, so level 1 keeps that count, proven, with no CP-SAT
    solve; the lower levels are still solved on this small pool."""
    people = [mentor("A", department="HR"), mentor("B", department="HR")]
    people += [person(f"m{i}", department=f"D{i}") for i in range(7)]
    inp = pool(people, form=Form.FACILITATED_GROUP, group_members_min=2, group_members_max=3)
    result = match(inp, 7, time_limit_s=5)
    assert validate(inp, result) == []
    assert result.stats.placed_count == result.stats.placed_bound == 7
    assert result.stats.levels["placed"] == 7
    assert result.stats.status == "OPTIMAL"
    levels_solved = {record.level for record in result.stats.solves}
    assert "placed" not in levels_solved
    assert "fit" in levels_solved  # a small pool's lower levels are searched (SEARCH_MENTEES_MAX)


def test_a_placement_short_of_the_flow_bound_is_solved() -> None:
    """A French-only mentee whose only eligible mentor has nobody else to take: the flow bound relaxes
    the group minimum (2) and counts it, the greedy cannot place it, so level 1 is solved, and proves
    the other three the most."""
    people = [mentor("A", department="HR"), mentor("B", department="HR", languages=["fr"])]
    people += [person(f"m{i}", department=f"D{i}") for i in range(3)]
    people.append(person("solo", department="X", languages=["fr"]))
    inp = pool(people, form=Form.FACILITATED_GROUP, group_members_min=2, group_members_max=3)
    result = match(inp, 7, time_limit_s=5)
    assert validate(inp, result) == []
    assert result.stats.placed_count == result.stats.placed_bound == 3
    assert "placed" in {record.level for record in result.stats.solves}
