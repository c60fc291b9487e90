"""The hard rules and the fit, computed for many pairs at once.

Profiles are encoded once into numpy arrays (tags as bitsets), so checking one person against every
mentor is a handful of vector operations: 20,000 mentees x 4,000 mentors is 80 million pairs, which
a Python loop per pair could not check in time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from contracts.events import FitContribution, ParticipantProfile
from contracts.policy import MatchingPolicy, Role, SeniorityRule

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Bits = npt.NDArray[np.uint64]

SELF = "self"
"""The ``failing`` key that excludes a person from their own candidates (peers): not in RULES."""
RULES = ("capacity", "shared language", "time zone", "seniority", "reporting line", "declared conflict", "department")


def _bitsets(values: list[list[str]], vocabulary: list[str] | None = None) -> Bits:
    """One row of bits per person; pass a shared ``vocabulary`` when two bitsets are compared."""
    vocab = {tag: i for i, tag in enumerate(vocabulary or sorted({t for v in values for t in v}))}
    words = max(1, (len(vocab) + 63) // 64)
    out = np.zeros((len(values), words), dtype=np.uint64)
    for row, tags in enumerate(values):
        for tag in tags:
            bit = vocab[tag]
            out[row, bit // 64] |= np.uint64(1) << np.uint64(bit % 64)
    return out


def _shared(a: Bits, b: Bits) -> IntArray:
    """Popcount of the intersection, row-wise (``a`` may be one row broadcast against many)."""
    counts: IntArray = np.bitwise_count(a & b).sum(axis=-1).astype(np.int64)
    return counts


def _narrow(a: Bits, b: Bits) -> tuple[npt.NDArray[np.unsignedinteger], npt.NDArray[np.unsignedinteger]] | None:
    """One-word bitsets as the narrowest unsigned type that holds both sides' tags, or None."""
    if a.shape[1] != 1 or b.shape[1] != 1:
        return None
    top = max(int(a.max(initial=0)), int(b.max(initial=0)))
    dtype = next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if top <= np.iinfo(t).max)
    return a[:, 0].astype(dtype), b[:, 0].astype(dtype)


def _packed_terms(terms: list[tuple[int, Bits, Bits]]) -> list[tuple[int, Bits, Bits]]:
    """Terms of one weight side by side in one 64-bit word when their tags fit (both skill directions,
    16 skills each, in 32 bits): one popcount counts both, as the sum of the two."""
    by_weight: dict[int, list[tuple[Bits, Bits]]] = {}
    for w, a, b in terms:
        by_weight.setdefault(w, []).append((a, b))
    out: list[tuple[int, Bits, Bits]] = []
    for w, pairs in by_weight.items():
        widths = [max(int(a.max(initial=0)), int(b.max(initial=0))).bit_length() for a, b in pairs]
        if len(pairs) == 1 or any(a.shape[1] != 1 or b.shape[1] != 1 for a, b in pairs) or sum(widths) > 64:
            out += [(w, a, b) for a, b in pairs]
            continue
        left = np.zeros((len(pairs[0][0]), 1), dtype=np.uint64)
        right = np.zeros((len(pairs[0][1]), 1), dtype=np.uint64)
        shift = 0
        for (a, b), width in zip(pairs, widths, strict=True):
            left |= a << np.uint64(shift)
            right |= b << np.uint64(shift)
            shift += width
        out.append((w, left, right))
    return out


def _weighted_shared(terms: list[tuple[int, Bits, Bits]], dtype: type[np.signedinteger[Any]] = np.int64) -> IntArray:
    """Sum over ``(weight, a, b)`` of weight x the tags row i of ``a`` shares with row j of ``b``, for
    every i and j: ``sum(w * _shared(a[:, None], b[None]))``.

    Vocabularies of at most 64 tags are counted on the narrowest type that holds them (8 skills in a
    byte), without the words axis and its sum: the general broadcast popcount materialised rows x
    others x words int64 temporaries and took 4 of the 5 s of eligibility and fit at 20,000 x 5,000.
    ``dtype`` must hold the sum (the caller knows the largest possible fit)."""
    total = np.zeros((len(terms[0][1]), len(terms[0][2])), dtype=dtype)
    for w, a, b in _packed_terms(terms):
        narrow = _narrow(a, b)
        if narrow is None:
            total += (w * _shared(a[:, None, :], b[None, :, :])).astype(dtype)
            continue
        count = np.bitwise_count(narrow[0][:, None] & narrow[1][None, :])
        total += count if w == 1 else count * dtype(w)  # into ``dtype`` in one pass (no astype copy)
    return total


def _by_distinct(values: npt.NDArray[Any], rule: Callable[[npt.NDArray[Any]], BoolArray]) -> BoolArray:
    """``rule(values)`` (one row per value) when a row depends on its value alone: ``rule`` runs once per
    distinct value and its rows are copied out, the same rows bit for bit."""
    distinct, inverse = np.unique(values, return_inverse=True)
    out: BoolArray = rule(distinct)[inverse.reshape(-1)]
    return out


def _any_shared(a: Bits, b: Bits) -> BoolArray:
    """Row i of ``a`` and row j of ``b`` share a tag, for every i and j: ``_shared(...) > 0`` without
    counting (one-word bitsets: a non-zero AND)."""
    narrow = _narrow(a, b)
    if narrow is None:
        out: BoolArray = _weighted_shared([(1, a, b)]) > 0
        return out
    any_: BoolArray = (narrow[0][:, None] & narrow[1][None, :]) != 0
    return any_


@dataclass
class Pool:
    """A pool encoded for vector checks; index i refers to ``people[i]``."""

    people: list[ParticipantProfile]
    index: dict[str, int]
    level: IntArray
    tz: IntArray
    dept: IntArray
    lang: Bits
    offered: Bits
    sought: Bits
    goals: Bits
    chains: list[list[str]]
    conflicts: list[set[str]]

    @classmethod
    def encode(cls, people: list[ParticipantProfile]) -> Pool:
        departments = {d: i for i, d in enumerate(sorted({p.department for p in people}))}
        skills = sorted({t for p in people for t in (*p.skills_offered, *p.skills_sought)})
        conflicts: list[set[str]] = [set(p.conflicts_with) for p in people]
        index = {p.participant_id: i for i, p in enumerate(people)}
        for p in people:  # declared conflicts hold both ways
            for other in p.conflicts_with:
                j = index.get(other)
                if j is not None:
                    conflicts[j].add(p.participant_id)
        return cls(
            people=people,
            index=index,
            level=np.array([p.level for p in people], dtype=np.int64),
            tz=np.array([p.utc_offset_minutes for p in people], dtype=np.int64),
            dept=np.array([departments[p.department] for p in people], dtype=np.int64),
            lang=_bitsets([p.languages for p in people]),
            offered=_bitsets([p.skills_offered for p in people], skills),
            sought=_bitsets([p.skills_sought for p in people], skills),
            goals=_bitsets([p.goals for p in people]),
            chains=[list(p.manager_chain) for p in people],
            conflicts=conflicts,
        )


def in_reporting_line(a: ParticipantProfile, b: ParticipantProfile, depth: int) -> bool:
    """Either manages the other within ``depth`` levels."""
    if depth <= 0:
        return False
    return a.participant_id in b.manager_chain[:depth] or b.participant_id in a.manager_chain[:depth]


class PairRules:
    """Mentor-side vector checks of one person (mentee or peer) against a set of others."""

    def __init__(self, pool: Pool, policy: MatchingPolicy, others: IntArray) -> None:
        self.pool = pool
        self.policy = policy
        self.others = others
        self._others_ids = {pool.people[int(j)].participant_id: pos for pos, j in enumerate(others)}
        # who appears in whose chain, restricted to ``others``: reporting lines in both directions
        self._managed_by: dict[str, list[int]] = {}
        depth = policy.reporting_line_depth
        if depth > 0:
            for pos, j in enumerate(others):
                for manager in pool.chains[int(j)][:depth]:
                    self._managed_by.setdefault(manager, []).append(pos)

    def failing(self, i: int) -> dict[str, BoolArray]:
        """For each rule, which of ``others`` it excludes for person ``i`` (seniority as mentor of i)."""
        p, pol, o = self.pool, self.policy, self.others
        n = len(o)
        out: dict[str, BoolArray] = {}
        if pol.require_shared_language:
            out["shared language"] = _shared(p.lang[i], p.lang[o]) == 0
        if pol.max_timezone_distance_hours is not None:
            out["time zone"] = np.abs(p.tz[o] - p.tz[i]) > pol.max_timezone_distance_hours * 60
        gap = pol.min_level_gap
        if pol.seniority_rule is SeniorityRule.MENTOR_ABOVE:
            out["seniority"] = p.level[o] < p.level[i] + gap
        elif pol.seniority_rule is SeniorityRule.MENTOR_BELOW:
            out["seniority"] = p.level[o] + gap > p.level[i]
        elif pol.seniority_rule is SeniorityRule.PEERS_WITHIN:
            out["seniority"] = np.abs(p.level[o] - p.level[i]) > pol.max_peer_level_spread
        line = np.zeros(n, dtype=bool)
        depth = pol.reporting_line_depth
        if depth > 0:
            for manager in p.chains[i][:depth]:
                pos = self._others_ids.get(manager)
                if pos is not None:
                    line[pos] = True
            for pos in self._managed_by.get(p.people[i].participant_id, []):
                line[pos] = True
        out["reporting line"] = line
        conflict = np.zeros(n, dtype=bool)
        for other in p.conflicts[i]:
            pos = self._others_ids.get(other)
            if pos is not None:
                conflict[pos] = True
        out["declared conflict"] = conflict
        if pol.max_same_department is not None and pol.max_same_department < 2:
            out["department"] = p.dept[o] == p.dept[i]
        self_pos = self._others_ids.get(p.people[i].participant_id)
        if self_pos is not None:  # nobody is their own partner; not a rule, so never counted in a reason
            itself = np.zeros(n, dtype=bool)
            itself[self_pos] = True
            out[SELF] = itself
        return out

    def eligible_rows(self, rows: IntArray) -> BoolArray:
        """``eligible`` for many people at once (one row each): broadcast array operations over a block
        of people instead of one Python call per person (5,000 x 1,500 took 0.7 s one by one)."""
        p, pol, o = self.pool, self.policy, self.others
        ok = np.ones((len(rows), len(o)), dtype=bool)
        if not len(rows) or not len(o):
            return ok
        # each of these rules is a function of one value of the person (language set, time zone, level):
        # computed once per distinct value in the block, then copied to its rows (a block of 160 people
        # at 50,000 x 12,500 holds a few dozen time zones; the direct broadcast took 2-5 ms a block)
        if pol.require_shared_language and p.lang.shape[1] == 1:
            lang_o = p.lang[o]
            ok &= _by_distinct(p.lang[rows][:, 0], lambda u: _any_shared(u[:, None], lang_o))
        elif pol.require_shared_language:
            ok &= _any_shared(p.lang[rows], p.lang[o])
        if pol.max_timezone_distance_hours is not None:
            tz_o = p.tz[o].astype(np.int32)  # minutes: int32 is half the work
            most = pol.max_timezone_distance_hours * 60
            ok &= _by_distinct(p.tz[rows].astype(np.int32), lambda u: np.abs(tz_o[None, :] - u[:, None]) <= most)
        gap, lo = pol.min_level_gap, p.level[o][None, :]
        spread = pol.max_peer_level_spread
        if pol.seniority_rule is SeniorityRule.MENTOR_ABOVE:
            ok &= _by_distinct(p.level[rows], lambda u: lo >= u[:, None] + gap)
        elif pol.seniority_rule is SeniorityRule.MENTOR_BELOW:
            ok &= _by_distinct(p.level[rows], lambda u: lo + gap <= u[:, None])
        elif pol.seniority_rule is SeniorityRule.PEERS_WITHIN:
            ok &= _by_distinct(p.level[rows], lambda u: np.abs(lo - u[:, None]) <= spread)
        if pol.max_same_department is not None and pol.max_same_department < 2:
            ok &= p.dept[o][None, :] != p.dept[rows][:, None]
        depth = pol.reporting_line_depth
        for r, i in enumerate(rows.tolist()):
            pid = p.people[i].participant_id
            for other in [*(p.chains[i][:depth] if depth > 0 else []), *p.conflicts[i], pid]:
                pos = self._others_ids.get(other)
                if pos is not None:
                    ok[r, pos] = False
            for pos in self._managed_by.get(pid, []):
                ok[r, pos] = False
        return ok

    def fit_rows(self, rows: IntArray, dtype: type[np.signedinteger[Any]] = np.int64) -> IntArray:
        """``fit`` for many people at once (one row each), as ``eligible_rows``; ``dtype`` must hold the
        largest possible fit (a narrow one halves the work and the memory of large pools)."""
        p, w, o = self.pool, self.policy.weights, self.others
        shared = [(w.skill, p.sought[rows], p.offered[o]), (w.skill, p.offered[rows], p.sought[o])]
        total: IntArray = _weighted_shared([*shared, (w.goal, p.goals[rows], p.goals[o])], dtype)
        cross = p.dept[o][None, :] != p.dept[rows][:, None]
        total += cross * dtype(w.cross_department)  # straight into ``dtype``: no int64 temporary to convert
        return total

    def eligible(self, i: int) -> BoolArray:
        mask = np.ones(len(self.others), dtype=bool)
        for excluded in self.failing(i).values():
            mask &= ~excluded
        return mask

    def fit(self, i: int) -> IntArray:
        """Fit of person i with each of ``others``: skills one seeks and the other offers (both ways),
        shared goals, different departments; weights from the policy."""
        p, w, o = self.pool, self.policy.weights, self.others
        skills = _shared(p.sought[i], p.offered[o]) + _shared(p.offered[i], p.sought[o])
        goals = _shared(p.goals[i], p.goals[o])
        cross = (p.dept[o] != p.dept[i]).astype(np.int64)
        total: IntArray = w.skill * skills + w.goal * goals + w.cross_department * cross
        return total


def _contribution(criterion: str, points: float, detail: str) -> FitContribution:
    """``FitContribution.model_construct(criterion=..., points=..., detail=...)``, without its generic walk
    over the fields' aliases and defaults: the same instance (``__dict__``, fields set, no extra, no
    private attributes; the model has no aliases, defaults or post-init), made 4.5 s faster for the
    264,000 contributions of 50,000 mentees' groups. ``test_rules`` checks it against model_construct."""
    out = FitContribution.__new__(FitContribution)
    object.__setattr__(out, "__dict__", {"criterion": criterion, "points": points, "detail": detail})
    object.__setattr__(out, "__pydantic_fields_set__", {"criterion", "points", "detail"})
    object.__setattr__(out, "__pydantic_extra__", None)
    object.__setattr__(out, "__pydantic_private__", None)
    return out


def pair_fit(a: ParticipantProfile, b: ParticipantProfile, policy: MatchingPolicy) -> tuple[int, list[FitContribution]]:
    """The same fit as :meth:`PairRules.fit` for one pair, with the explanation an admin reads.
    (``_contribution``: the fields are built here from validated input; validating each one again
    cost a second per 5,000 groups.)"""
    w = policy.weights
    parts: list[FitContribution] = []
    for x, y in ((a, b), (b, a)):
        for skill in sorted(set(x.skills_sought) & set(y.skills_offered)):
            if w.skill:
                detail = f"{skill} sought by {x.participant_id}, offered by {y.participant_id}"
                parts.append(_contribution("skill", float(w.skill), detail))
    for goal in sorted(set(a.goals) & set(b.goals)):
        if w.goal:
            detail = f"shared goal {goal} ({a.participant_id}, {b.participant_id})"
            parts.append(_contribution("goal", float(w.goal), detail))
    if a.department != b.department and w.cross_department:
        detail = f"cross-department {a.department} / {b.department} ({a.participant_id}, {b.participant_id})"
        parts.append(_contribution("cross_department", float(w.cross_department), detail))
    return int(sum(c.points for c in parts)), parts


def describe_exclusions(counts: dict[str, int], policy: MatchingPolicy) -> str:
    words = {
        "reporting line": f"reporting line (depth {policy.reporting_line_depth})",
        "time zone": f"time zone (> {policy.max_timezone_distance_hours} h)",
        "seniority": f"seniority ({policy.seniority_rule})",
        "department": f"department (max {policy.max_same_department} per group)",
    }
    parts = [f"{words.get(rule, rule)} excludes {n}" for rule, n in counts.items() if n]
    return ", ".join(parts) if parts else "nobody to pair with"


def first_failing_counts(failing: dict[str, BoolArray], extra: Iterable[tuple[str, BoolArray]] = ()) -> dict[str, int]:
    """Each excluded candidate counted once, under the first rule (in RULES order) that excludes it."""
    rules = dict(failing)
    rules.update(dict(extra))
    counted: BoolArray | None = None
    counts: dict[str, int] = {}
    for rule in RULES:
        mask = rules.get(rule)
        if mask is None:
            continue
        fresh = mask if counted is None else mask & ~counted
        counts[rule] = int(fresh.sum())
        counted = mask.copy() if counted is None else counted | mask
    return counts


def is_mentor(p: ParticipantProfile) -> bool:
    return p.role is Role.MENTOR
