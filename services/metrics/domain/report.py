"""The shape every KPI is reported in, so that the JSON, the CSV and the page render one structure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from services.metrics.domain.suppression import Figure


class WindowName(StrEnum):
    WEEK = "week"
    MONTH = "month"
    PROGRAM_TO_DATE = "program_to_date"


WINDOW_DAYS = {WindowName.WEEK: 7, WindowName.MONTH: 30}


@dataclass(frozen=True)
class Window:
    """[start, end): flows (enrolments, sessions, answers) count inside it; stocks (active, placed,
    loads) are taken at its end. ``start`` None = since the beginning."""

    name: WindowName
    start: datetime | None
    end: datetime

    @classmethod
    def ending(cls, name: WindowName, end: datetime) -> Window:
        days = WINDOW_DAYS.get(name)
        return cls(name, end - timedelta(days=days) if days else None, end)

    def contains(self, t: datetime | None) -> bool:
        return t is not None and t < self.end and (self.start is None or t >= self.start)


@dataclass(frozen=True)
class Kpi:
    key: str
    figure: Figure
    measurable: bool = True


@dataclass(frozen=True)
class Breakdown:
    key: str
    cells: dict[str, Figure]


@dataclass
class Section:
    name: str
    kpis: list[Kpi] = field(default_factory=list)
    breakdowns: list[Breakdown] = field(default_factory=list)


@dataclass(frozen=True)
class Formula:
    label: str
    formula: str


FORMULAS: dict[str, Formula] = {}
"""Every KPI's label and formula, keyed like the report; the API docs are written from it."""


def formula(key: str, label: str, text: str) -> str:
    FORMULAS[key] = Formula(label, text)
    return key
