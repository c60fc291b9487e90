"""One realistic example payload per event type, for the AsyncAPI document and integration teams.

A test validates each one against its model, so the documentation cannot drift from the code.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from contracts import events as e
from contracts.policy import Form, Role, default_policy

_T = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
_PROGRAM = "prg-2026-leaders"
_GROUP = "grp-7f3a9c"
_RUN = "run-000042"

_PROFILE = e.ParticipantProfile(
    participant_id="E10457",
    role=Role.MENTEE,
    department="Finance",
    level=3,
    manager_id="E10020",
    manager_chain=["E10020", "E10001"],
    location="Milan",
    utc_offset_minutes=60,
    languages=["it", "en"],
    skills_offered=["excel"],
    skills_sought=["negotiation", "public-speaking"],
    goals=["leadership", "promotion"],
)

EXAMPLES: dict[str, e.Event] = {
    e.ProgramOpened.TYPE: e.ProgramOpened(
        program_id=_PROGRAM,
        name="Emerging leaders 2026",
        form=Form.FACILITATED_GROUP,
        cadence_days=14,
        starts_on=date(2026, 3, 1),
        ends_on=date(2026, 12, 31),
        policy=default_policy(Form.FACILITATED_GROUP),
        opened_at=_T,
    ),
    e.ProgramUpdated.TYPE: e.ProgramUpdated(
        program_id=_PROGRAM,
        name="Emerging leaders 2026",
        form=Form.FACILITATED_GROUP,
        cadence_days=21,
        starts_on=date(2026, 3, 1),
        ends_on=date(2026, 12, 31),
        policy=default_policy(Form.FACILITATED_GROUP),
        opened_at=_T,
        status="open",
    ),
    e.ParticipantEnrolled.TYPE: e.ParticipantEnrolled(program_id=_PROGRAM, profile=_PROFILE, enrolled_at=_T),
    e.ParticipantUpdated.TYPE: e.ParticipantUpdated(program_id=_PROGRAM, profile=_PROFILE, updated_at=_T),
    e.ParticipantWithdrawn.TYPE: e.ParticipantWithdrawn(program_id=_PROGRAM, participant_id="E10457", withdrawn_at=_T),
    e.MatchingCompleted.TYPE: e.MatchingCompleted(
        program_id=_PROGRAM,
        run_id=_RUN,
        seed=9137,
        input_digest="sha256:5d41402abc4b2a76b9719d911017c592",
        placed_count=412,
        unplaced_count=8,
        group_count=61,
        total_fit=3204.0,
        max_load_ratio=0.75,
        solver=e.SolverStats(status="OPTIMAL", objective=3204.0, bound=3204.0, gap=0.0, wall_time_seconds=4.2),
        completed_at=_T,
    ),
    e.GroupMatched.TYPE: e.GroupMatched(
        program_id=_PROGRAM,
        run_id=_RUN,
        group_id=_GROUP,
        form=Form.FACILITATED_GROUP,
        members=[
            e.GroupMember(participant_id="E20001", role=Role.MENTOR),
            e.GroupMember(participant_id="E10457", role=Role.MENTEE),
            e.GroupMember(participant_id="E10502", role=Role.MENTEE),
        ],
        fit=8.0,
        explanation=[
            e.FitContribution(criterion="skill", points=6.0, detail="negotiation sought by E10457, offered by E20001"),
            e.FitContribution(criterion="goal", points=1.0, detail="shared goal leadership (E10457, E10502)"),
            e.FitContribution(criterion="cross_department", points=1.0, detail="Finance and Legal"),
        ],
        cadence_days=14,
        matched_at=_T,
    ),
    e.ParticipantUnmatched.TYPE: e.ParticipantUnmatched(
        program_id=_PROGRAM,
        run_id=_RUN,
        participant_id="E10999",
        reason_code=e.UnmatchedReason.LOST_LOTTERY,
        reason="lost the lottery to 3 equally eligible people (lottery rank 17 of 20)",
    ),
    e.MatchOverrideRecorded.TYPE: e.MatchOverrideRecorded(
        program_id=_PROGRAM,
        override_id="ovr-12",
        kind=e.OverrideKind.LOCK_PAIR,
        participant_ids=["E10042", "E10999"],
        recorded_at=_T,
    ),
    e.SessionScheduled.TYPE: e.SessionScheduled(
        program_id=_PROGRAM, group_id=_GROUP, session_id="ses-01", scheduled_for=_T, duration_minutes=60
    ),
    e.SessionHeld.TYPE: e.SessionHeld(
        program_id=_PROGRAM,
        group_id=_GROUP,
        session_id="ses-01",
        held_at=_T,
        duration_minutes=55,
        attendees=["E20001", "E10457"],
    ),
    e.SessionCancelled.TYPE: e.SessionCancelled(
        program_id=_PROGRAM,
        group_id=_GROUP,
        session_id="ses-02",
        kind=e.CancellationKind.RESCHEDULED,
        rescheduled_to=datetime(2026, 3, 20, 9, 30, tzinfo=UTC),
        cancelled_at=_T,
    ),
    e.GoalSet.TYPE: e.GoalSet(
        program_id=_PROGRAM,
        group_id=_GROUP,
        goal_id="goal-9",
        participant_id="E10457",
        category=e.GoalCategory.COMMUNICATION,
        steps_total=4,
        set_at=_T,
    ),
    e.GoalProgressed.TYPE: e.GoalProgressed(
        program_id=_PROGRAM,
        group_id=_GROUP,
        goal_id="goal-9",
        participant_id="E10457",
        steps_done=2,
        steps_total=4,
        progressed_at=_T,
    ),
    e.RelationshipClosed.TYPE: e.RelationshipClosed(
        program_id=_PROGRAM, group_id=_GROUP, reason=e.ClosureReason.COMPLETED, closed_at=_T, term=1
    ),
    e.ExpectationsAgreed.TYPE: e.ExpectationsAgreed(
        program_id=_PROGRAM, group_id=_GROUP, cadence_days=14, format=e.MeetingFormat.VIDEO, agreed_at=_T
    ),
    e.FeedbackGiven.TYPE: e.FeedbackGiven(
        program_id=_PROGRAM,
        group_id=_GROUP,
        feedback_id="fb-31",
        respondent_role=Role.MENTEE,
        session_id="ses-01",
        rating=4,
        would_recommend=9,
        mentor_helps=5,
        given_at=_T,
    ),
    e.FeedbackGivenV2.TYPE: e.FeedbackGivenV2(
        program_id=_PROGRAM,
        group_id=_GROUP,
        feedback_id="fb-7d01c2",
        revision=1,
        survey_id="srv-checkin",
        survey_version=1,
        survey_kind=e.SurveyKind.CHECKIN,
        respondent_role=Role.MENTEE,
        scores=[
            e.QuestionScore(question_id="q-help", measure=e.Measure.MENTOR_HELPS, score=4, scale_min=1, scale_max=5),
            e.QuestionScore(question_id="q-fit", measure=e.Measure.PAIRING_FIT, score=5, scale_min=1, scale_max=5),
        ],
        given_at=_T,
    ),
    e.AlertRaised.TYPE: e.AlertRaised(
        alert_id="alr-5",
        program_id=_PROGRAM,
        group_id=_GROUP,
        kind=e.AlertKind.NO_RECENT_SESSION,
        severity="warning",
        detail="no session held for 45 days (agreed cadence 14 days)",
        raised_at=_T,
    ),
    e.AlertCleared.TYPE: e.AlertCleared(
        alert_id="alr-5", program_id=_PROGRAM, group_id=_GROUP, kind=e.AlertKind.NO_RECENT_SESSION, cleared_at=_T
    ),
    e.AlertRaisedV2.TYPE: e.AlertRaisedV2(
        alert_id="alr-6",
        program_id=_PROGRAM,
        group_id=_GROUP,
        kind=e.AlertKindV2.NO_RECENT_SESSION,
        severity="warning",
        detail="no session held for 45 days (agreed cadence 14 days)",
        risk_score=62.5,
        raised_at=_T,
    ),
    e.AlertClearedV2.TYPE: e.AlertClearedV2(
        alert_id="alr-6", program_id=_PROGRAM, group_id=_GROUP, kind=e.AlertKindV2.NO_RECENT_SESSION, cleared_at=_T
    ),
}


def example_json(event_type: str) -> dict[str, Any]:
    return EXAMPLES[event_type].model_dump(mode="json")
