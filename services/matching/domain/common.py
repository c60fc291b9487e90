"""Pieces every solver shares: who is who, free capacity, group ids, results, load figures."""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from contracts.events import GroupMember, ParticipantProfile, UnmatchedReason
from contracts.policy import MatchingPolicy, Role
from services.matching.domain.lottery import lottery_ranks
from services.matching.domain.model import Group, MatchingInput, MatchingResult, OverrideKind, Unplaced
from services.matching.domain.rules import pair_fit

Progress = Callable[[str, float], None]

NamedGroup = tuple[list[str], list[str]]
"""A group by ids: (its mentors, the lead first; its members)."""


@dataclass(frozen=True)
class Checkpoint:
    """A complete grouping a run has reached, every rule holding: what stands if the run is stopped
    (``adapters.solver_process`` stops a run at its time limit and builds the result from the last one,
    ``stopped.stopped_result``)."""

    stage: str
    """What the run had done, in words for the result's notes, e.g. "the greedy, fit reassigned"."""
    groups: list[NamedGroup]
    placed_bound: int
    """The proven bound on placed people known at that stage (the counting bound at worst)."""


def no_progress(_message: str, _fraction: float) -> None:
    return None


@dataclass
class Prepared:
    """The input, canonicalised: participants sorted by id so that input order never matters."""

    inp: MatchingInput
    seed: int
    people: list[ParticipantProfile]
    ranks: dict[str, int]
    mentors: list[int]
    seekers: list[int]
    """Mentees or peers: the people who are placed (mentors are the resource)."""
    capacity: dict[str, int]
    load: dict[str, int]
    locked: list[tuple[str, str]] = field(default_factory=list)
    excluded: set[frozenset[str]] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    locks_applied: int = 0
    """Locks the solver actually enforced (a lock it cannot express is noted, not counted)."""
    started: float = field(default_factory=time.perf_counter)
    """When the run started (wall clock): the time limit counts preparation too."""
    on_stage: Callable[[Checkpoint], None] | None = None
    """Receives each complete grouping the run reaches (``stage_done``); None: nobody can stop the run."""

    @classmethod
    def of(cls, inp: MatchingInput, seed: int) -> Prepared:
        people = sorted(inp.participants, key=lambda p: p.participant_id)
        ids = [p.participant_id for p in people]
        if len(set(ids)) != len(ids):
            raise ValueError("a participant appears twice in the pool")
        mentors = [i for i, p in enumerate(people) if p.role is Role.MENTOR]
        seekers = [i for i, p in enumerate(people) if p.role is not Role.MENTOR]
        capacity = {people[i].participant_id: int(people[i].capacity or 0) for i in mentors}
        load = {pid: int(inp.existing_load.get(pid, 0)) for pid in capacity}
        prepared = cls(inp, seed, people, lottery_ranks(ids, seed), mentors, seekers, capacity, load)
        known = set(ids)
        for o in inp.overrides:
            a, b = o.participant_ids
            if a not in known or b not in known:
                prepared.notes.append(f"override {o.kind} {a}/{b} ignored: not both in the pool")
            elif o.kind is OverrideKind.EXCLUDE_PAIR:
                prepared.excluded.add(frozenset((a, b)))
            else:
                prepared.locked.append((a, b))
        return prepared

    @property
    def policy(self) -> MatchingPolicy:
        return self.inp.policy

    @functools.cached_property
    def by_id(self) -> dict[str, ParticipantProfile]:
        return {p.participant_id: p for p in self.people}

    @functools.cached_property
    def mentor_ids(self) -> list[str]:
        """Mentors in canonical order: position k here is position k in every mentor-side array."""
        return [self.people[m].participant_id for m in self.mentors]

    @functools.cached_property
    def _mentor_pos(self) -> dict[str, int]:
        return {pid: k for k, pid in enumerate(self.mentor_ids)}

    @functools.cached_property
    def _excluded_by(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for pair in self.excluded:
            a, b = sorted(pair)
            out.setdefault(a, set()).add(b)
            out.setdefault(b, set()).add(a)
        return out

    def drop_excluded_mentors(self, pid: str, eligible: npt.NDArray[np.bool_]) -> None:
        """An admin's exclude-pair override between this person and a mentor: that mentor is not eligible."""
        for other in self._excluded_by.get(pid, ()):
            k = self._mentor_pos.get(other)
            if k is not None:
                eligible[k] = False

    @functools.cached_property
    def seeker_rank(self) -> dict[str, int]:
        """Lottery position among the people being placed (mentors are not competitors)."""
        ids = sorted((self.people[i].participant_id for i in self.seekers), key=lambda pid: self.ranks[pid])
        return {pid: r for r, pid in enumerate(ids)}

    @property
    def overrides_applied(self) -> int:
        return len(self.excluded) + self.locks_applied

    def apart(self, a: str, b: str) -> bool:
        """Reporting line within the policy's depth, a declared conflict, or an exclude override."""
        pa, pb = self.by_id[a], self.by_id[b]
        depth = self.policy.reporting_line_depth
        if depth > 0 and (a in pb.manager_chain[:depth] or b in pa.manager_chain[:depth]):
            return True
        return b in pa.conflicts_with or a in pb.conflicts_with or frozenset((a, b)) in self.excluded

    def free(self, pid: str) -> int:
        return max(0, self.capacity.get(pid, 0) - self.load.get(pid, 0))

    def stage_done(self, stage: str, groups: Iterable[tuple[Sequence[str], Sequence[str]]], placed_bound: int) -> None:
        """Hand a complete, valid grouping to whoever may stop the run. Callers pass a generator, so the
        cost (building the lists of ids) is paid only when someone listens."""
        if self.on_stage is not None:
            named = [(list(mentors), list(members)) for mentors, members in groups]
            self.on_stage(Checkpoint(stage, named, placed_bound))


def group_id(seed: int, program_id: str, member_ids: list[str], run_id: str = "") -> str:
    """Deterministic: the same run of the same input names its groups the same. The service passes the
    run id, so re-matching the same people in a later run (after their group closed) gives a new id."""
    key = (
        f"{run_id}:{seed}:{program_id}:{','.join(sorted(member_ids))}"
        if run_id
        else (f"{seed}:{program_id}:{','.join(sorted(member_ids))}")
    )
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"grp-{digest[:16]}"


def make_group(prep: Prepared, mentor_ids: list[str], member_ids: list[str]) -> Group:
    """A group with its fit and explanation: mentor-member pairs, or every pair in a peer group."""
    by_id = prep.by_id
    members = sorted(member_ids)
    mentors = sorted(mentor_ids)
    pairs: list[tuple[ParticipantProfile, ParticipantProfile]]
    if mentors:
        pairs = [(by_id[m], by_id[x]) for m in mentors for x in members]
    else:
        pairs = [(by_id[a], by_id[b]) for k, a in enumerate(members) for b in members[k + 1 :]]
    total = 0
    explanation = []
    for a, b in pairs:
        points, parts = pair_fit(a, b, prep.policy)
        total += points
        explanation.extend(parts)
    roster = [GroupMember(participant_id=m, role=Role.MENTOR) for m in mentors]
    roster += [GroupMember(participant_id=x, role=by_id[x].role) for x in members]
    return Group(
        group_id=group_id(prep.seed, prep.inp.program_id, mentors + members),
        members=roster,
        fit=float(total),
        explanation=explanation,
    )


def with_run_group_ids(result: MatchingResult, run_id: str) -> MatchingResult:
    """The same result with group ids that include the run id (still deterministic per run)."""
    groups = [
        g.model_copy(
            update={"group_id": group_id(result.seed, result.program_id, [m.participant_id for m in g.members], run_id)}
        )
        for g in result.groups
    ]
    return result.model_copy(update={"groups": sorted(groups, key=lambda g: g.group_id)})


def unplaced(pid: str, code: UnmatchedReason, reason: str) -> Unplaced:
    return Unplaced(participant_id=pid, reason_code=code, reason=reason)


def loads_after(prep: Prepared, groups: list[Group]) -> dict[str, int]:
    load = dict(prep.load)
    for g in groups:
        for m in g.members:
            if m.role is Role.MENTOR:
                load[m.participant_id] = load.get(m.participant_id, 0) + 1
    return load


def max_load_ratio(prep: Prepared, load: dict[str, int]) -> float:
    ratios = [load[m] / c for m, c in prep.capacity.items() if c > 0]
    return round(max(ratios, default=0.0), 6)


def apart_pairs(prep: Prepared, ids: list[str]) -> list[tuple[str, str]]:
    """Pairs that may never share a group: reporting lines, declared conflicts, excluded overrides."""
    depth = prep.policy.reporting_line_depth
    wanted = set(ids)
    pairs: set[tuple[str, str]] = set()
    for pid in ids:
        p = prep.by_id[pid]
        for manager in p.manager_chain[:depth] if depth > 0 else []:
            if manager in wanted:
                pairs.add((min(pid, manager), max(pid, manager)))
        for other in p.conflicts_with:
            if other in wanted and other != pid:
                pairs.add((min(pid, other), max(pid, other)))
    for pair in prep.excluded:
        a, b = sorted(pair)
        if a in wanted and b in wanted:
            pairs.add((a, b))
    return sorted(pairs)
