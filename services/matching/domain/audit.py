"""What an administrator reads around a run: the what-if diff, explanations for everyone in the run
(mentors who stayed idle included), and the code version a run records. Pure functions, no I/O.

The diff answers "what would change for the people this run could move": a plain dry run after a
published run only re-matches people who are not in an active group, so everyone the earlier run placed
and this run could not touch is left out of it, and both sides' fit is computed under the same weights
(the what-if's), so a fit delta never mixes two scales.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from contracts.events import ParticipantProfile
from contracts.policy import MatchingPolicy, Role
from services.matching.domain.model import Group, MatchingInput, MatchingResult, OverrideKind
from services.matching.domain.rules import pair_fit

PACKAGE_VERSION = "0.1.0"


def code_version() -> str:
    """The package version plus a digest of the matching core's source: two runs with the same code
    version solved with the same rules and solver code (an auditor replays with that checkout)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"{PACKAGE_VERSION}+{digest.hexdigest()[:12]}"


def group_fit(members: list[tuple[ParticipantProfile, Role]], policy: MatchingPolicy) -> float:
    """A group's fit under ``policy``'s weights: mentor-member pairs, or every pair in a peer group."""
    mentors = [p for p, role in members if role is Role.MENTOR]
    others = [p for p, role in members if role is not Role.MENTOR]
    if mentors:
        pairs = [(m, x) for m in mentors for x in others]
    else:
        pairs = [(a, b) for k, a in enumerate(others) for b in others[k + 1 :]]
    return float(sum(pair_fit(a, b, policy)[0] for a, b in pairs))


def _partners(result: MatchingResult) -> dict[str, frozenset[str]]:
    """For every placed non-mentor: the other members of their group."""
    out: dict[str, frozenset[str]] = {}
    for g in result.groups:
        ids = frozenset(m.participant_id for m in g.members)
        for m in g.members:
            if m.role is not Role.MENTOR:
                out[m.participant_id] = ids - {m.participant_id}
    return out


def _mentor_loads(result: MatchingResult) -> Counter[str]:
    return Counter(m.participant_id for g in result.groups for m in g.members if m.role is Role.MENTOR)


def _fit_of(groups: list[Group], profiles: dict[str, ParticipantProfile], policy: MatchingPolicy) -> float:
    return sum(
        group_fit([(profiles[m.participant_id], m.role) for m in g.members], policy)
        for g in groups
        if all(m.participant_id in profiles for m in g.members)
    )


def diff_results(
    before_input: MatchingInput, before: MatchingResult, after_input: MatchingInput, after: MatchingResult
) -> dict[str, Any]:
    """Real moves only, among people both runs could place; fit under the what-if's weights on both sides."""
    movable = {p.participant_id for p in before_input.participants if p.role is not Role.MENTOR} & {
        p.participant_id for p in after_input.participants if p.role is not Role.MENTOR
    }
    a, b = _partners(before), _partners(after)
    moved = sorted(pid for pid in movable & set(a) & set(b) if a[pid] != b[pid])

    def touches(g: Group) -> bool:
        return any(m.participant_id in movable for m in g.members)

    profiles = {p.participant_id: p for p in (*before_input.participants, *after_input.participants)}
    weights = after_input.policy
    loads_before, loads_after = _mentor_loads(before), _mentor_loads(after)
    mentors = sorted(set(loads_before) | set(loads_after))
    return {
        "people_considered": len(movable),
        "people_moved": len(moved),
        "moved_sample": moved[:20],
        "newly_placed": sorted(movable & (set(b) - set(a)))[:50],
        "no_longer_placed": sorted(movable & (set(a) - set(b)))[:50],
        "placed_delta": len(movable & set(b)) - len(movable & set(a)),
        "fit_weights": weights.weights.model_dump(),
        "total_fit_before": _fit_of([g for g in before.groups if touches(g)], profiles, weights),
        "total_fit_after": _fit_of([g for g in after.groups if touches(g)], profiles, weights),
        "mentor_loads": [
            {"mentor_id": m, "groups_before": loads_before[m], "groups_after": loads_after[m]}
            for m in mentors
            if loads_before[m] != loads_after[m]
        ][:200],
        "max_load_ratio_before": before.stats.max_load_ratio,
        "max_load_ratio_after": after.stats.max_load_ratio,
    }


def overrides_about(inp: MatchingInput, participant_id: str) -> list[dict[str, str]]:
    """The locks and exclusions a run applied to this person (reasons stay in the admin-only list)."""
    out = []
    for o in inp.overrides:
        if participant_id in o.participant_ids:
            other = next(x for x in o.participant_ids if x != participant_id)
            verb = "must be grouped with" if o.kind is OverrideKind.LOCK_PAIR else "must never be grouped with"
            out.append({"kind": o.kind.value, "with": other, "effect": f"an administrator's override: {verb} {other}"})
    return out


def _idle_cause(result: MatchingResult) -> str:
    unplaced = len(result.unplaced)
    if unplaced == 0:
        return "everyone was placed with other mentors, without raising anyone's load ratio above theirs"
    if result.stats.placed_count >= result.stats.placed_bound:
        return (
            f"none of the {unplaced} unplaced people could join them under the program's rules "
            "(placement is proven maximal)"
        )
    return f"the solver found no way to place any of the {unplaced} unplaced people with them within its time limit"


def explain_mentor(inp: MatchingInput, result: MatchingResult, mentor_id: str) -> dict[str, Any]:
    """Why a mentor of the run carries what they carry, or stayed idle."""
    profile = next(p for p in inp.participants if p.participant_id == mentor_id)
    capacity = profile.capacity or 0
    existing = inp.existing_load.get(mentor_id, 0)
    new = _mentor_loads(result)[mentor_id]
    groups = [g.group_id for g in result.groups if any(m.participant_id == mentor_id for m in g.members)]
    if existing >= capacity:
        why = (
            f"full before this run: {existing} active group(s) (this program and others together) "
            f"fill a capacity of {capacity}"
        )
    elif new == 0:
        why = f"idle: {capacity - existing} free slot(s), but " + _idle_cause(result)
    else:
        why = f"leads {new} new group(s); {existing + new} of {capacity} slots used after this run"
    return {
        "role": "mentor",
        "capacity": capacity,
        "existing_load": existing,
        "new_groups": groups,
        "load_after": existing + new,
        "load_ratio_after": round((existing + new) / capacity, 6) if capacity else None,
        "reason": why,
    }
