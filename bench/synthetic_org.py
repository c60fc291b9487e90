"""Synthetic organisations and enrolments: a realistic-looking org tree, departments, levels, time
zones, languages, skills and goals. Used by the enrollment tests, the benchmarks and the demo, so
that all three exercise the same shapes of data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

DEPARTMENTS = ["Finance", "Legal", "Engineering", "Sales", "Marketing", "Operations", "HR", "Research"]
SITES = [("Milan", 60, ["it", "en"]), ("Warsaw", 60, ["pl", "en"]), ("Lyon", 60, ["fr", "en"]),
         ("Munich", 60, ["de", "en"]), ("New York", -300, ["en"]), ("Singapore", 480, ["en", "zh"])]  # fmt: skip
SKILLS = ["negotiation", "public-speaking", "python", "leadership", "budgeting", "sql", "design",
          "coaching", "sales", "writing", "data-analysis", "project-management", "ux", "cloud", "legal-drafting",
          "hiring"]  # fmt: skip
GOALS = ["leadership", "promotion", "communication", "hard-skill", "career-change", "network", "visibility"]


@dataclass(frozen=True)
class Person:
    employee_id: str
    manager_id: str | None
    department: str
    level: int
    location: str
    utc_offset_minutes: int
    languages: list[str]

    def row(self) -> dict[str, Any]:
        return dict(self.__dict__)


def org_chart(size: int, seed: int = 7, prefix: str = "E") -> list[Person]:
    """A tree: a CEO, then each person reports to someone one level up, mostly in their department."""
    rng = random.Random(seed)
    people: list[Person] = []
    by_level: dict[int, list[Person]] = {}
    for i in range(size):
        if i == 0:
            level, manager = 9, None
            department = "Executive"
        else:
            level = min(8, 1 + int(rng.expovariate(0.55)))
            candidates = [p for lvl in range(level + 1, 10) for p in by_level.get(lvl, [])[-50:]]
            manager_p = rng.choice(candidates) if candidates else people[0]
            manager = manager_p.employee_id
            department = manager_p.department if manager_p.department != "Executive" else rng.choice(DEPARTMENTS)
            if rng.random() < 0.1:
                department = rng.choice(DEPARTMENTS)
        site, offset, langs = rng.choice(SITES)
        person = Person(f"{prefix}{i:06d}", manager, department, level, site, offset, list(langs))
        people.append(person)
        by_level.setdefault(level, []).append(person)
    return people


def enrolments(people: list[Person], count: int, seed: int = 11, mentor_share: float = 0.2) -> list[dict[str, Any]]:
    """Enrolment rows for ``count`` people: seniors tend to mentor, everyone seeks and offers skills."""
    rng = random.Random(seed)
    chosen = rng.sample(people[1:], min(count, len(people) - 1))
    rows = []
    for p in chosen:
        mentor = p.level >= 3 and rng.random() < mentor_share * 3
        row: dict[str, Any] = {
            "participant_id": p.employee_id,
            "role": "mentor" if mentor else "mentee",
            "skills_offered": rng.sample(SKILLS, rng.randint(1, 4)),
            "skills_sought": rng.sample(SKILLS, rng.randint(1, 3)),
            "goals": rng.sample(GOALS, rng.randint(1, 2)),
        }
        if mentor:
            row["capacity"] = rng.randint(2, 6)
        rows.append(row)
    return rows


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """CSV with ``;`` inside list cells, as the enrollment uploads expect."""
    lines = [",".join(columns)]
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            cells.append(";".join(map(str, v)) if isinstance(v, list) else "" if v is None else str(v))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"
