"""Weeks of a program's life after matching, played through the public APIs as its members would.

The demo uses it once matching has published groups: each simulated group agrees its expectations,
meets (or stops meeting), sets goals and ticks steps off, and its members answer the session surveys
that fall due. Everything is a real HTTP call with the member's own participant token, so the sessions
and feedback services (and whatever consumes their events) see what a real program produces.

The past is played in the past: sessions are logged at dates of the last ``weeks`` weeks (the sessions
service accepts up to 90 days back), so twelve simulated weeks end today. Groups follow one of three
scripts drawn with a seed: ``steady`` (meets every cadence, satisfied), ``fading`` (stops after a few
weeks) and ``unhappy`` (keeps rescheduling, low ratings). At the end of the twelve weeks the steady
groups close their relationship as completed, and their members answer the end-of-relationship survey
(its "would you recommend the program" question is what the Net Promoter Score is built from).
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.auth import JwtConfig, issue_token

SCRIPTS = (("steady", 0.7), ("fading", 0.15), ("unhappy", 0.15))
CADENCE_DAYS = 14
GOAL_CATEGORIES = ("hard_skill", "leadership", "communication", "promotion")
RATINGS = {"steady": (4, 5), "fading": (3, 4), "unhappy": (1, 2)}
RECOMMEND = (6, 10)
"""The steady groups' members on the 0-10 recommend question: promoters, passives and a few detractors."""
SURVEY_OPEN = timedelta(days=28)
"""A session survey is answered only for the recent sessions: the feedback service closes a session's
survey 30 days after it (``SURVEY_OPEN_DAYS``), so the simulated past before that has none due."""


class ApiError(RuntimeError):
    pass


@dataclass
class Api:
    """One service, called as one person (a participant token for ``subject``)."""

    base: str
    token: str

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(f"{method} {path}: {exc.code} {exc.read().decode()[:500]}") from exc
        return json.loads(raw) if raw else None


@dataclass
class Summary:
    groups: Counter[str] = field(default_factory=Counter)
    sessions_held: int = 0
    reschedules: int = 0
    goals_set: int = 0
    steps_done: int = 0
    ratings: list[int] = field(default_factory=list)
    closed: int = 0
    recommend: list[int] = field(default_factory=list)

    @property
    def mean_rating(self) -> float | None:
        return round(sum(self.ratings) / len(self.ratings), 2) if self.ratings else None


@dataclass
class Member:
    participant_id: str
    role: str
    sessions: Api
    feedback: Api
    attended: dict[str, str] = field(default_factory=dict)
    """session id -> the group's script, for the surveys that fall due once feedback hears session.held"""
    closing: set[str] = field(default_factory=set)
    """groups whose end-of-relationship survey falls due once feedback hears relationship.closed"""


@dataclass
class Simulation:
    sessions_url: str
    feedback_url: str
    jwt: JwtConfig
    weeks: int = 12
    seed: int = 2026
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    summary: Summary = field(default_factory=Summary)

    def member(self, participant_id: str, role: str) -> Member:
        token = issue_token(self.jwt, participant_id, ["participant"])
        return Member(participant_id, role, Api(self.sessions_url, token), Api(self.feedback_url, token))

    def run(
        self, groups: list[dict[str, Any]], progress: Callable[[int, int], None] | None = None, timeout: float = 300
    ) -> Summary:
        """Play every group, then answer the session surveys as they fall due (the feedback service opens
        them when it hears ``session.held``, a moment later), waiting at most ``timeout`` seconds."""
        rng = random.Random(self.seed)
        everyone: list[Member] = []
        steady: list[tuple[str, list[Member]]] = []
        for done, group in enumerate(groups, start=1):
            script = rng.choices([s for s, _ in SCRIPTS], weights=[w for _, w in SCRIPTS])[0]
            members = [self.member(m["participant_id"], m["role"]) for m in group["members"]]
            self.play_group(group["group_id"], members, script, rng)
            self.summary.groups[script] += 1
            everyone += members
            if script == "steady":
                steady.append((group["group_id"], members))
            if progress:
                progress(done, len(groups))
        deadline = time.monotonic() + timeout
        self.answer_surveys(everyone, rng, deadline)
        self.complete(steady, rng, deadline)
        return self.summary

    def complete(self, groups: list[tuple[str, list[Member]]], rng: random.Random, deadline: float) -> None:
        """The steady groups end as completed; their members answer the end-of-relationship survey."""
        for group_id, members in groups:
            lead = next((m for m in members if m.role == "mentor"), members[0])
            lead.sessions.call("POST", f"/relationships/{group_id}/close", {"outcome": "completed"})
            self.summary.closed += 1
            for m in members:
                m.closing.add(group_id)
        waiting = [m for _, members in groups for m in members]
        while waiting and time.monotonic() < deadline:
            waiting = [m for m in waiting if not self.answer_closing(m, rng)]
            if waiting:
                time.sleep(0.5)

    def answer_closing(self, m: Member, rng: random.Random) -> bool:
        """Answer the end-of-relationship surveys due to ``m``; True once every closed group's is answered."""
        due = m.feedback.call("GET", "/me/surveys/due")["items"]
        for survey in (s for s in due if s["kind"] == "program" and s["group_id"] in m.closing):
            m.closing.discard(survey["group_id"])
            self.summary.recommend += answer(m, survey, RECOMMEND, rng).get("would_recommend", [])
        return not m.closing

    def play_group(self, group_id: str, members: list[Member], script: str, rng: random.Random) -> None:
        lead = next((m for m in members if m.role == "mentor"), members[0])
        lead.sessions.call(
            "PUT", f"/relationships/{group_id}/expectations",
            {"cadence_days": CADENCE_DAYS, "format": rng.choice(["video", "in_person", "phone"]),
             "agenda_template": "check-in, one problem, next steps", "boundaries": "what is said here stays here"},
        )  # fmt: skip
        self.set_goals(group_id, members, rng)
        for week in range(0, self.weeks, CADENCE_DAYS // 7):
            if script == "fading" and week >= 4:
                break
            self.meet(group_id, members, script, week, rng)

    def meet(self, group_id: str, members: list[Member], script: str, week: int, rng: random.Random) -> None:
        when = self.now - timedelta(weeks=self.weeks - week) + timedelta(hours=rng.randint(0, 48))
        session = members[0].sessions.call(
            "POST", f"/relationships/{group_id}/sessions", {"scheduled_for": when.isoformat(), "duration_minutes": 60}
        )
        if script == "unhappy" and rng.random() < 0.6:
            when += timedelta(days=2)
            members[0].sessions.call(
                "POST", f"/sessions/{session['session_id']}/reschedule",
                {"scheduled_for": when.isoformat(), "reason": "a clash with a deadline"},
            )  # fmt: skip
            self.summary.reschedules += 1
        present = [m for m in members if rng.random() < 0.9] or members[:1]
        members[0].sessions.call(
            "POST", f"/sessions/{session['session_id']}/held",
            {"held_at": when.isoformat(), "duration_minutes": rng.choice([45, 60, 75]),
             "attendees": [m.participant_id for m in present]},
        )  # fmt: skip
        self.summary.sessions_held += 1
        if when > self.now - SURVEY_OPEN:
            for m in present:
                m.attended[session["session_id"]] = script

    def set_goals(self, group_id: str, members: list[Member], rng: random.Random) -> None:
        for m in members:
            if m.role == "mentor":
                continue
            goal = m.sessions.call(
                "POST", f"/relationships/{group_id}/goals",
                {"category": rng.choice(GOAL_CATEGORIES), "wording": "grow in a way my manager will notice",
                 "steps": ["name the skill", "practise it twice", "ask for feedback"]},
            )  # fmt: skip
            self.summary.goals_set += 1
            for step in range(1, rng.randint(0, 3) + 1):
                m.sessions.call("POST", f"/goals/{goal['goal_id']}/steps/{step}/done")
                self.summary.steps_done += 1

    def answer_surveys(self, members: list[Member], rng: random.Random, deadline: float) -> None:
        waiting = [m for m in members if m.attended]
        while waiting and time.monotonic() < deadline:
            waiting = [m for m in waiting if not self.answer_due(m, rng)]
            if waiting:
                time.sleep(0.5)

    def answer_due(self, m: Member, rng: random.Random) -> bool:
        """Answer the session surveys due to ``m``; True once every session they attended was answered."""
        due = m.feedback.call("GET", "/me/surveys/due")["items"]
        for survey in (s for s in due if s["session_id"] in m.attended):
            scores = answer(m, survey, RATINGS[m.attended.pop(survey["session_id"])], rng)
            self.summary.ratings += scores.get("session_rating", [])
        return not m.attended


def answer(m: Member, survey: dict[str, Any], scores: tuple[int, int], rng: random.Random) -> dict[str, list[int]]:
    """``m`` answers a due survey, each question a score drawn from ``scores`` (kept within its scale);
    returns the scores given by measure."""
    given: dict[str, list[int]] = {}
    answers = []
    for q in survey["questions"]:
        score = max(q["scale_min"], min(q["scale_max"], rng.randint(*scores)))
        answers.append({"question_id": q["question_id"], "score": score})
        given.setdefault(q["measure"], []).append(score)
    m.feedback.call(
        "POST", "/me/answers",
        {"survey_id": survey["survey_id"], "survey_version": survey["survey_version"],
         "group_id": survey["group_id"], "session_id": survey["session_id"], "answers": answers},
    )  # fmt: skip
    return given
