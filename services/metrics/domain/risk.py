"""A relationship's risk score: four parts that add up to it, each explainable on its own.

- overdue (0-40): days since the last session held (or since matching, if none) against the cadence;
  nothing until one cadence has passed, then 40 points per cadence overdue, so 1.5 cadences = 20 and
  two cadences or more = 40.
- slips (0-20): 5 points per session cancelled or rescheduled since the last session held.
- ratings (0-20): 20 x (1 - mean of the last 3 session ratings, as a share of the scale); nothing
  without ratings (no evidence is not bad evidence).
- pairing_fit (0-20): 20 x (1 - mean of the last 3 pairing-fit answers, as a share of the scale).

The parts are kept in tenths of a point, so the score is exactly their sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

OVERDUE_MAX = 40
SLIP_POINTS = 5
SLIPS_MAX = 20
RATINGS_MAX = 20
FIT_MAX = 20
RECENT = 3
HISTORY = 2 * RECENT
"""the answers the safety nets read: the last three, and the three before for a fall"""


@dataclass(frozen=True)
class RelationshipState:
    """What the risk and the safety nets look at for one open relationship."""

    group_id: str
    program_id: str
    cadence_days: int
    matched_at: datetime
    last_held_at: datetime | None
    slips_since_last_held: int
    ratings: Sequence[float] = ()
    """Session ratings in [0, 1], oldest first."""
    pairing_fit: Sequence[float] = ()
    """Pairing-fit answers in [0, 1], oldest first."""

    def days_since_last_session(self, now: datetime) -> float:
        since = self.last_held_at or self.matched_at
        return max(0.0, (now - since).total_seconds() / 86400)


@dataclass(frozen=True)
class Risk:
    score: float
    parts: dict[str, float]


def _tenths(x: float) -> int:
    return round(x * 10)


def _recent_mean(values: Sequence[float]) -> float | None:
    recent = list(values)[-RECENT:]
    return sum(recent) / len(recent) if recent else None


def risk(state: RelationshipState, now: datetime) -> Risk:
    overdue_cadences = state.days_since_last_session(now) / state.cadence_days
    tenths = {
        "overdue": _tenths(min(OVERDUE_MAX, max(0.0, (overdue_cadences - 1) * OVERDUE_MAX))),
        "slips": _tenths(min(SLIPS_MAX, SLIP_POINTS * state.slips_since_last_held)),
        "ratings": _score_part(_recent_mean(state.ratings), RATINGS_MAX),
        "pairing_fit": _score_part(_recent_mean(state.pairing_fit), FIT_MAX),
    }
    return Risk(score=sum(tenths.values()) / 10, parts={k: v / 10 for k, v in tenths.items()})


def _score_part(mean: float | None, most: int) -> int:
    return 0 if mean is None else _tenths(most * (1 - min(1.0, max(0.0, mean))))
