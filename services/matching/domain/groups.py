"""Group forms with CP-SAT: facilitated groups (a mentor and several mentees), peer groups (peers
only) and team mentoring (an intact team and its mentors). Levels, in order: most placed; who is
placed by lottery; lowest maximum mentor load ratio, then fewest idle mentors; best fit.

Interpretation of the group rules (documented in docs/matching.md):
- facilitated groups: language, time zone and seniority are mentor-member rules (the mentor runs the
  sessions); reporting lines, declared conflicts and the department bound hold for every member pair;
- peer groups: every rule holds for every pair; a group shares one language (a group language is
  chosen) and its members' time zones and levels fit in one window of the policy's width;
- teams: the mentors must be eligible for every team member; a team is placed whole or not at all.
  An intact team's own reporting lines are expected (its manager may be a member) and do not keep it
  out; a declared conflict or an exclude override *inside* a team does: the matcher cannot split a
  team, so that team is not placed and is told why.

Every form is seeded with a greedy solution (CP-SAT hints) and falls back to it when the solver finds
nothing in its budget, so a run always returns a rule-respecting result with an honest status.
"""

from __future__ import annotations

from contracts.policy import Form
from services.matching.domain.common import (
    Prepared,
    Progress,
)
from services.matching.domain.facilitated import solve_facilitated
from services.matching.domain.model import MatchingResult
from services.matching.domain.peers import solve_peer_groups
from services.matching.domain.teams import solve_teams


def solve_groups(prep: Prepared, progress: Progress, time_limit: float) -> MatchingResult:
    pol = prep.policy
    if prep.inp.form is Form.TEAM:
        return solve_teams(prep, progress, time_limit)
    if pol.mentors_per_group == 0:
        return solve_peer_groups(prep, progress, time_limit)
    return solve_facilitated(prep, progress, time_limit)
