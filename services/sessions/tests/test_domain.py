"""Sessions' rules, without I/O: who may read and change what, when a group stops being viable, which
session times and attendance are plausible, how goals progress."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from contracts.policy import Form, Role, default_policy
from runtime.errors import ConflictError, FieldError, ForbiddenError, NotFoundError
from services.sessions.domain import model
from services.sessions.domain.model import Caller, Member, ProgramInfo, Relationship, RelationshipStatus

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def rel(*members: tuple[str, Role], form: Form = Form.ONE_TO_ONE, status: str = "open") -> Relationship:
    return Relationship(
        group_id="g1",
        program_id="p1",
        form=form,
        term=1,
        status=RelationshipStatus(status),
        started_on=date(2026, 5, 1),
        cadence_days=14,
        members=tuple(Member(pid, role) for pid, role in members),
    )


PAIR = rel(("M", Role.MENTOR), ("e", Role.MENTEE))
PEERS = rel(("a", Role.PEER), ("b", Role.PEER), ("c", Role.PEER), form=Form.PEER_GROUP)


def program(form: Form, **policy: int) -> ProgramInfo:
    return ProgramInfo.of("p1", form, 14, default_policy(form).model_copy(update=policy))


# --- access ---------------------------------------------------------------------------------------


def test_a_member_reads_as_a_member_staff_as_staff_and_anyone_else_is_told_nothing() -> None:
    assert model.reader_of(PAIR, Caller("e", participant=True)) == Member("e", Role.MENTEE)
    assert model.reader_of(PAIR, Caller("hr", admin=True)) is None
    assert model.reader_of(PAIR, Caller("bot", integration=True)) is None
    with pytest.raises(NotFoundError) as err:
        model.reader_of(PAIR, Caller("stranger", participant=True))
    assert err.value.loc == ["path", "group_id"]


def test_a_member_whose_part_ended_reads_the_group_no_more() -> None:
    ended = model.without(PAIR, "e")
    with pytest.raises(NotFoundError):
        model.member_or_404(ended, "e")


def test_the_mentor_sets_expectations_a_mentee_may_not_and_in_a_peer_group_anyone_does() -> None:
    model.may_set_expectations(PAIR, "M")
    with pytest.raises(ForbiddenError):
        model.may_set_expectations(PAIR, "e")
    for peer in ("a", "b", "c"):
        model.may_set_expectations(PEERS, peer)
    with pytest.raises(NotFoundError):
        model.may_set_expectations(PAIR, "stranger")


def test_a_closed_relationship_takes_no_more_writes() -> None:
    with pytest.raises(ConflictError):
        model.writable(rel(("M", Role.MENTOR), ("e", Role.MENTEE), status="closed"))


# --- lifecycle ------------------------------------------------------------------------------------


def test_a_pair_without_its_mentor_or_its_mentee_is_no_longer_viable() -> None:
    p = program(Form.ONE_TO_ONE)
    assert model.still_viable(PAIR, p)
    assert not model.still_viable(model.without(PAIR, "M"), p)
    assert not model.still_viable(model.without(PAIR, "e"), p)


def test_a_group_goes_on_while_it_keeps_a_mentor_and_its_minimum() -> None:
    group = rel(("M", Role.MENTOR), *((f"e{i}", Role.MENTEE) for i in range(4)), form=Form.FACILITATED_GROUP)
    p = program(Form.FACILITATED_GROUP, group_members_min=3)
    assert model.still_viable(model.without(group, "e0"), p)
    assert not model.still_viable(model.without(model.without(group, "e0"), "e1"), p)


def test_a_peer_group_below_its_minimum_closes_and_needs_no_mentor() -> None:
    p = program(Form.PEER_GROUP)
    assert p.mentors_per_group == 0 and p.members_min == 3
    assert model.still_viable(PEERS, p)
    assert not model.still_viable(model.without(PEERS, "a"), p)


def test_an_unknown_program_is_assumed_to_have_its_forms_default_sizes() -> None:
    assumed = ProgramInfo.assumed("p1", Form.PEER_GROUP, 30)
    assert (assumed.mentors_per_group, assumed.members_min, assumed.cadence_days) == (0, 3, 30)


# --- sessions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "held"),
    [
        (NOW - timedelta(days=91), False),
        (NOW - timedelta(days=91), True),
        (NOW + timedelta(days=367), False),
        (NOW + timedelta(hours=1), True),
    ],
)
def test_a_time_far_in_the_past_or_future_or_a_held_session_to_come_names_its_field(when: datetime, held: bool) -> None:
    with pytest.raises(FieldError) as err:
        model.check_when(when, NOW, "held_at", held=held)
    assert err.value.loc == ["body", "held_at"]


@pytest.mark.parametrize(
    ("when", "held"),
    [
        (NOW - timedelta(days=89), False),
        (NOW - timedelta(days=89), True),
        (NOW + timedelta(days=365), False),
        (NOW + timedelta(minutes=10), True),
    ],
)
def test_times_within_the_bounds_are_fine(when: datetime, held: bool) -> None:
    model.check_when(when, NOW, "scheduled_for", held=held)


def test_a_time_without_a_zone_is_refused() -> None:
    with pytest.raises(FieldError, match="time zone"):
        model.check_when(NOW.replace(tzinfo=None), NOW, "scheduled_for", held=False)


def test_attendance_names_members_and_the_guest_once_each() -> None:
    model.check_attendance(PAIR, ["M", "e"], None)
    model.check_attendance(PAIR, ["M", "guest"], "guest")
    with pytest.raises(FieldError) as err:
        model.check_attendance(PAIR, ["M", "outsider"], None)
    assert err.value.loc == ["body", "attendees", 1]
    with pytest.raises(FieldError) as err:
        model.check_attendance(PAIR, ["e", "e"], None)
    assert err.value.loc == ["body", "attendees", 1]
    with pytest.raises(FieldError):
        model.check_attendance(model.without(PAIR, "e"), ["e"], None)


def test_a_guest_facilitator_comes_from_outside_the_group() -> None:
    model.check_guest(PAIR, "outsider")
    with pytest.raises(FieldError) as err:
        model.check_guest(PAIR, "e")
    assert err.value.loc == ["body", "guest_id"]


def test_held_or_cancelled_sessions_are_history() -> None:
    model.may_change_session(model.SessionStatus.SCHEDULED, "s1")
    for status in (model.SessionStatus.HELD, model.SessionStatus.CANCELLED):
        with pytest.raises(ConflictError):
            model.may_change_session(status, "s1")


# --- goals ----------------------------------------------------------------------------------------


def test_ticking_steps_counts_each_once_and_only_existing_steps() -> None:
    assert model.tick(set(), 3, 2, "g") == model.GoalProgress(1, 3)
    assert model.tick({2}, 3, 1, "g") == model.GoalProgress(2, 3)
    with pytest.raises(ConflictError):
        model.tick({2}, 3, 2, "g")
    with pytest.raises(NotFoundError) as err:
        model.tick(set(), 3, 4, "g")
    assert err.value.loc == ["path", "step"]
