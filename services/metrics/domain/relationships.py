"""The state of each open relationship at a moment, from its sessions, slips and answers."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from services.metrics.domain.facts import Facts
from services.metrics.domain.risk import RelationshipState


def relationship_states(facts: Facts, at: datetime) -> dict[str, RelationshipState]:
    """Open relationships at ``at`` (matched, not closed; a renewal keeps one open) by group id."""
    last_held: dict[str, datetime] = {}
    for x in facts.sessions:
        if x.held_at <= at and (x.group_id not in last_held or x.held_at > last_held[x.group_id]):
            last_held[x.group_id] = x.held_at
    slips: dict[str, int] = defaultdict(int)
    for slip in facts.slips:
        since = last_held.get(slip.group_id)
        if slip.at <= at and (since is None or slip.at > since):
            slips[slip.group_id] += 1
    ratings: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    fits: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for f in facts.feedback:
        if f.given_at > at:
            continue
        if f.session_rating is not None:
            ratings[f.group_id].append((f.given_at, f.session_rating))
        if f.pairing_fit is not None:
            fits[f.group_id].append((f.given_at, f.pairing_fit))
    states = {}
    for g in facts.groups:
        if not g.open_at(at):
            continue
        states[g.group_id] = RelationshipState(
            group_id=g.group_id,
            program_id=g.program_id,
            cadence_days=g.cadence,
            matched_at=g.matched_at,
            last_held_at=last_held.get(g.group_id),
            slips_since_last_held=slips[g.group_id],
            ratings=[v for _, v in sorted(ratings[g.group_id], key=lambda tv: tv[0])],
            pairing_fit=[v for _, v in sorted(fits[g.group_id], key=lambda tv: tv[0])],
        )
    return states
