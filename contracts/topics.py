"""Kafka topics, defined once: named by family and version, keyed so that one program's or group's
events stay in order on one partition."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    key_field: str
    """The payload field whose value is the Kafka key (and the CloudEvents subject)."""
    description: str

    @property
    def dead_letter(self) -> str:
        """Where consumers park messages of this topic they cannot parse or validate."""
        return f"{self.name}.dlt"


ENROLLMENT = Topic("mentoring.enrollment.v1", 6, "program_id", "Programs and their participants.")
MATCHING = Topic("mentoring.matching.v1", 6, "program_id", "Matching runs, the groups formed, who stayed unplaced.")
SESSIONS = Topic("mentoring.sessions.v1", 6, "group_id", "Sessions, goals and the end of relationships, per group.")
FEEDBACK = Topic("mentoring.feedback.v1", 6, "group_id", "Participants' scores (never their free text).")
ALERTS = Topic("mentoring.alerts.v1", 3, "program_id", "Early alerts when a group fades, and their clearing.")

ALL_TOPICS: tuple[Topic, ...] = (ENROLLMENT, MATCHING, SESSIONS, FEEDBACK, ALERTS)
