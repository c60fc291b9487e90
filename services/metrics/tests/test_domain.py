"""The pure core: formulas against brute-force oracles (hypothesis), suppression that cannot be undone
by subtraction, risk parts that add up, and alerts raised once and cleared once."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.metrics.domain import stats
from services.metrics.domain.alerts import AlertKey, decide, relationship_conditions
from services.metrics.domain.risk import RelationshipState, risk
from services.metrics.domain.suppression import MIN_PEOPLE, breakdown, figure, suppressed_cells
from services.metrics.domain.thresholds import Thresholds

T0 = datetime(2026, 1, 5, tzinfo=UTC)


@settings(deadline=None)  # timing on a shared machine is not what these properties test
@given(st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=30))
def test_gini_equals_the_pairwise_definition(xs: list[int]) -> None:
    n, total = len(xs), sum(xs)
    oracle = 0.0 if total == 0 else sum(abs(a - b) for a in xs for b in xs) / (2 * n * n * (total / n))
    assert abs((stats.gini(xs) or 0.0) - oracle) < 1e-9


def test_gini_hand_values() -> None:
    assert stats.gini([1, 1, 1, 1]) == 0
    assert stats.gini([0, 0, 0, 4]) == 0.75
    assert abs((stats.gini([1, 2, 3]) or 0) - 2 / 9) < 1e-12


@settings(deadline=None)  # timing on a shared machine is not what these properties test
@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=1, max_size=50), st.floats(0.01, 1))
def test_nearest_rank_is_the_smallest_value_with_q_at_or_below(xs: list[float], q: float) -> None:
    v = stats.nearest_rank(xs, q)
    assert v in xs
    assert sum(1 for x in xs if x <= v) >= q * len(xs) - 1e-9
    smaller = [x for x in xs if x < v]
    assert all(sum(1 for y in xs if y <= x) < q * len(xs) - 1e-9 for x in smaller)


def test_quantile_and_nps_hand_values() -> None:
    assert stats.nearest_rank(list(range(1, 11)), 0.9) == 9
    assert stats.median([4, 1, 3, 2]) == 2.5
    assert stats.nps([10, 9, 8, 7, 6, 0]) == 100 * (2 - 2) / 6
    assert stats.nps([10, 10, 10, 5]) == 50


counts = st.dictionaries(st.sampled_from("abcdefghij"), st.integers(min_value=0, max_value=30), min_size=1)


@settings(deadline=None)  # timing on a shared machine is not what these properties test
@given(counts)
def test_no_visible_cell_or_total_difference_reveals_fewer_than_five_people(cells: dict[str, int]) -> None:
    hidden = suppressed_cells(cells)
    total = sum(cells.values())
    for k, n in cells.items():
        if 0 < n < MIN_PEOPLE:
            assert k in hidden, "every small cell is hidden"
    if total < MIN_PEOPLE:
        assert hidden == {k for k, n in cells.items() if n > 0}
        return
    if hidden:
        # total minus the visible cells gives the hidden cells' sum only: at least two cells, five people
        assert len(hidden) >= 2 or len([k for k, n in cells.items() if n > 0]) == 1
        assert sum(cells[k] for k in hidden) >= MIN_PEOPLE
    # nothing is hidden without need: a breakdown without small cells is shown whole
    if not any(0 < n < MIN_PEOPLE for n in cells.values()):
        assert not hidden


@settings(deadline=None)  # timing on a shared machine is not what these properties test
@given(counts)
def test_a_hidden_cell_cannot_be_pinned_down_from_the_totals(cells: dict[str, int]) -> None:
    """Brute force: every assignment of counts to the hidden cells consistent with the visible cells and
    the total; a hidden small cell must have more than one possible value."""
    hidden = sorted(suppressed_cells(cells))
    if sum(cells.values()) < MIN_PEOPLE or len(hidden) > 4:
        return
    remainder = sum(cells[k] for k in hidden)
    options = [
        combo
        for combo in itertools.product(range(remainder + 1), repeat=len(hidden))
        if sum(combo) == remainder and all(c > 0 for c in combo)
    ]
    for i, k in enumerate(hidden):
        if 0 < cells[k] < MIN_PEOPLE:
            assert len({o[i] for o in options}) > 1, (cells, hidden)


def test_breakdown_and_figure_show_suppressed_cells_as_less_than_five() -> None:
    b = breakdown({"a": (3.0, 3), "b": (20.0, 20), "c": (9.0, 9)})
    assert b["a"].display == "< 5" and b["a"].value is None
    assert b["c"].suppressed, "the smallest other cell is hidden too, so 'a' is not total - b - c"
    assert not b["b"].suppressed and b["b"].display == "20"
    assert figure(0.5, 4).display == "< 5"
    assert figure(0.5, 5).display == "0.50"


states = st.builds(
    RelationshipState,
    group_id=st.just("g1"),
    program_id=st.just("p1"),
    cadence_days=st.integers(1, 60),
    matched_at=st.just(T0),
    last_held_at=st.one_of(st.none(), st.integers(0, 200).map(lambda d: T0 + timedelta(days=d))),
    slips_since_last_held=st.integers(0, 10),
    ratings=st.lists(st.floats(0, 1), max_size=8),
    pairing_fit=st.lists(st.floats(0, 1), max_size=8),
)


@settings(deadline=None)  # timing on a shared machine is not what these properties test
@given(states, st.integers(0, 400))
def test_risk_parts_add_up_to_the_score_within_bounds(state: RelationshipState, days: int) -> None:
    now = T0 + timedelta(days=days)
    r = risk(state, now)
    assert round(sum(r.parts.values()), 1) == r.score
    assert 0 <= r.score <= 100
    assert 0 <= r.parts["overdue"] <= 40 and 0 <= r.parts["slips"] <= 20
    later = risk(state, now + timedelta(days=30))
    assert later.parts["overdue"] >= r.parts["overdue"], "waiting longer never lowers the risk"


def test_risk_hand_values() -> None:
    state = RelationshipState("g", "p", 14, T0, T0, 2, ratings=[0.25, 0.5, 0.5, 0.5], pairing_fit=[1.0])
    r = risk(state, T0 + timedelta(days=21))  # 1.5 cadences: 20 points
    assert r.parts == {"overdue": 20.0, "slips": 10.0, "ratings": 10.0, "pairing_fit": 0.0}
    assert r.score == 40.0


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, 20)), st.sets(st.integers(0, 20)))
def test_alerts_are_raised_once_and_cleared_once(wanted_ids: set[int], open_ids: set[int]) -> None:
    from services.metrics.domain.alerts import Condition

    wanted = [
        Condition(AlertKey("no_recent_session", f"g{i}"), "p", "warning", "x", group_id=f"g{i}") for i in wanted_ids
    ]
    open_keys = {AlertKey("no_recent_session", f"g{i}") for i in open_ids}
    d = decide(wanted, open_keys)
    after = (open_keys - set(d.clear)) | {c.key for c in d.raise_}
    assert after == {c.key for c in wanted}
    again = decide(wanted, after)
    assert again.raise_ == [] and again.clear == [], "a second evaluation of the same state does nothing"


def test_fading_relationship_conditions() -> None:
    t = Thresholds()
    state = RelationshipState("g", "p", 14, T0, T0, 0)
    assert relationship_conditions(state, T0 + timedelta(days=20), t) == []
    kinds = [c.key.kind for c in relationship_conditions(state, T0 + timedelta(days=21), t)]
    assert kinds == ["no_recent_session"]
    slipping = RelationshipState("g", "p", 14, T0, T0, 3, ratings=[0.2, 0.2, 0.2])
    kinds = [c.key.kind for c in relationship_conditions(slipping, T0 + timedelta(days=1), t)]
    assert kinds == ["repeated_reschedules", "feedback_drop"]
    falling = RelationshipState("g", "p", 14, T0, T0, 0, ratings=[1.0, 1.0, 1.0, 0.75, 0.5, 0.75])
    [drop] = relationship_conditions(falling, T0 + timedelta(days=1), t)
    assert drop.key.kind == "feedback_drop" and "fell" in drop.detail


def test_mentor_and_program_safety_nets() -> None:
    from services.metrics.domain.alerts import MentorLoad, ProgramPlacement, mentor_condition, program_condition

    t = Thresholds()
    assert mentor_condition(MentorLoad("M1", "p", 1, 2, programs=2), t) is None
    assert mentor_condition(MentorLoad("M1", "p", 2, 2, programs=1), t) is None, "filled by one program: the plan"
    at = mentor_condition(MentorLoad("M1", "p", 2, 2, programs=2), t)
    assert at is not None and at.severity == "warning" and at.mentor_id == "M1" and "M1" not in at.detail
    assert "2 programs" in at.detail
    over = mentor_condition(MentorLoad("M1", "p", 3, 2, programs=1), t)
    assert over is not None and over.severity == "critical"
    assert mentor_condition(MentorLoad("M1", "p", 2, 2, programs=2), Thresholds(mentor_load_ratio=1.5)) is None
    assert mentor_condition(MentorLoad("M1", "p", 2, 2, programs=1), Thresholds(mentor_load_ratio=0.5)) is not None
    assert program_condition(ProgramPlacement("p", 10, 7, has_run=False), t) is None, "no run yet: nothing to judge"
    low = program_condition(ProgramPlacement("p", 10, 7, has_run=True), t)
    assert low is not None and low.key.kind == "match_rate_below_target" and "70%" in low.detail
    assert program_condition(ProgramPlacement("p", 10, 8, has_run=True), t) is None


def test_a_relationship_whose_sessions_predate_its_match_expects_sessions_from_the_first_one() -> None:
    from services.metrics.domain.facts import GroupFact, SessionFact
    from services.metrics.domain.report import Window, WindowName
    from services.metrics.domain.tally import expected_sessions

    matched = datetime(2026, 6, 1, tzinfo=UTC)
    group = GroupFact("g1", "p1", "one_to_one", 3.0, 14, matched, members=())
    before = [SessionFact("s1", "g1", "p1", matched - timedelta(days=28), 2)]
    end = matched + timedelta(days=14)
    window = Window(WindowName.PROGRAM_TO_DATE, None, end)
    assert expected_sessions([group], window, [])[0] == 1.0, "from the match: 14 days / cadence 14"
    assert expected_sessions([group], window, before)[0] == 3.0, "from the first session held, 28 days earlier"
