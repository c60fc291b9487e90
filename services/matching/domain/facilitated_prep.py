"""Facilitated groups, preparation: who may join which mentor, how well they fit, who cannot be placed
and why, and each mentee's candidate mentors.

Everything here is array work over blocks of mentees (``PairRules.eligible_rows`` / ``fit_rows``):
one Python call per mentee (eligibility, fit, candidate ranking) took 2-3 s at 5,000 mentees and
grows with mentees x mentors, before the solver's clock was even checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from contracts.events import UnmatchedReason
from services.matching.domain.common import Prepared, unplaced
from services.matching.domain.model import Unplaced
from services.matching.domain.rules import BoolArray, IntArray, PairRules, describe_exclusions, first_failing_counts

BLOCK_CELLS = 2_000_000
"""Mentee x mentor cells computed per block: bounds the temporaries of the broadcast operations."""


@dataclass
class Eligibility:
    """Row r of ``eligible``/``fit`` is ``seekers[r]``; column k is mentor position k."""

    seekers: list[str]
    eligible: BoolArray
    fit: IntArray
    free: IntArray
    reasons: dict[str, Unplaced] = field(default_factory=dict)
    row: dict[str, int] = field(default_factory=dict)
    best: tuple[IntArray, IntArray, IntArray] | None = None
    """Large pools (``remember_best``): per row, its best-fitting eligible mentors with room, best first,
    as (row start offsets, mentor positions, fits); ``top_arcs`` then reads them instead of ranking
    the row again (each ranking is a partition of the whole 50,000 x 12,500 matrix: 5 s)."""

    def __post_init__(self) -> None:
        self.row = {pid: r for r, pid in enumerate(self.seekers)}

    @property
    def eligible_of(self) -> dict[str, BoolArray]:
        return {pid: self.eligible[r] for r, pid in enumerate(self.seekers)}

    @property
    def fit_of(self) -> dict[str, IntArray]:
        return {pid: self.fit[r] for r, pid in enumerate(self.seekers)}

    @property
    def active(self) -> list[str]:
        """Seekers with somewhere to go (no reason to be left out yet)."""
        return [pid for pid in self.seekers if pid not in self.reasons]

    def room(self, pid: str) -> BoolArray:
        out: BoolArray = self.eligible[self.row[pid]] & (self.free > 0)
        return out


def _fit_dtype(prep: Prepared) -> type[np.signedinteger[Any]]:
    """The narrowest integer type that holds any pair's fit: the fit matrix is mentees x mentors (at
    50,000 x 12,500, 5 GB as int64, 1.25 GB as int16, 0.6 GB as int8; every new page of it is a page
    fault, 3 s per GB on the benchmark machine). Readers convert to int or int64 before arithmetic
    that could overflow (negating a fit, at most 126 in int8, cannot)."""
    w = prep.policy.weights
    skills = {t for p in prep.people for t in (*p.skills_offered, *p.skills_sought)}
    goals = {t for p in prep.people for t in p.goals}
    most = w.skill * 2 * len(skills) + w.goal * len(goals) + w.cross_department
    return next((t for t in (np.int8, np.int16) if most < np.iinfo(t).max), np.int64)


def eligibility(prep: Prepared, rules: PairRules, free: IntArray) -> Eligibility:
    """Eligibility and fit of every seeker against every mentor (exclude overrides applied), and the
    reason of each seeker who has no eligible mentor with room (the per-rule counts are computed for
    those people only)."""
    pol = prep.policy
    rows = np.array(prep.seekers, dtype=np.int64)
    m = len(prep.mentors)
    eligible = np.zeros((len(rows), m), dtype=bool)
    dtype = _fit_dtype(prep)
    fit = np.zeros((len(rows), m), dtype=dtype)
    seekers = [prep.people[int(i)].participant_id for i in rows]
    count = np.zeros(len(rows), dtype=np.int64)
    with_room = np.zeros(len(rows), dtype=bool)
    has_room = free > 0
    block = max(1, BLOCK_CELLS // max(1, m))
    for start in range(0, len(rows), block):
        part = rows[start : start + block]
        cells = eligible[start : start + len(part)]
        cells[:] = rules.eligible_rows(part)
        for r in range(start, start + len(part)):
            prep.drop_excluded_mentors(seekers[r], eligible[r])
        fit[start : start + len(part)] = rules.fit_rows(part, dtype)
        count[start : start + len(part)] = np.count_nonzero(cells, axis=1)
        with_room[start : start + len(part)] = (cells & has_room[None, :]).any(axis=1)
    out = Eligibility(seekers, eligible, fit, free)
    for r in np.flatnonzero((count < max(1, pol.mentors_per_group)) | ~with_room).tolist():
        pid = seekers[r]
        if count[r] == 0:
            failing = rules.failing(int(rows[r]))
            text = f"no eligible mentor: {describe_exclusions(first_failing_counts(failing), pol)}"
            out.reasons[pid] = unplaced(pid, UnmatchedReason.NO_ELIGIBLE_PARTNER, text)
        elif not with_room[r]:
            text = f"capacity exhausted: all {int(count[r])} eligible mentors are full"
            out.reasons[pid] = unplaced(pid, UnmatchedReason.CAPACITY_EXHAUSTED, text)
        else:
            text = f"only {int(count[r])} eligible mentors; the policy wants {pol.mentors_per_group} per group"
            out.reasons[pid] = unplaced(pid, UnmatchedReason.NO_ELIGIBLE_PARTNER, text)
    return out


def room_counts(el: Eligibility, people: list[str]) -> IntArray:
    """Per person, how many eligible mentors with room it has (by blocks: no people x mentors copy)."""
    rows = np.array([el.row[pid] for pid in people], dtype=np.int64)
    out = np.zeros(len(rows), dtype=np.int64)
    block = max(1, BLOCK_CELLS // max(1, el.eligible.shape[1]))
    for start in range(0, len(rows), block):
        cells = el.eligible[rows[start : start + block]] & (el.free > 0)[None, :]
        out[start : start + len(cells)] = np.count_nonzero(cells, axis=1)
    return out


def slots_reachable(el: Eligibility, people: list[str]) -> int:
    """Sum over (person, eligible mentor) of the mentor's free groups: the exact model's variables."""
    rows = np.array([el.row[pid] for pid in people], dtype=np.int64)
    total = 0
    block = max(1, BLOCK_CELLS // max(1, el.eligible.shape[1]))
    for start in range(0, len(rows), block):
        total += int(np.count_nonzero(el.eligible[rows[start : start + block]], axis=0) @ el.free)
    return total


def best_mentors(el: Eligibility, active: list[str], local_rank: IntArray, top: int) -> dict[str, set[int]]:
    """Each active seeker's ``top`` best-fitting eligible mentors with room, ties by the mentors' own
    lottery order (``local_rank``, a unique key): the same choice as sorting each row, by blocks."""
    m = el.eligible.shape[1]
    out: dict[str, set[int]] = {}
    rows = np.array([el.row[pid] for pid in active], dtype=np.int64)
    block = max(1, BLOCK_CELLS // max(1, m))
    tiebreak = (m - local_rank).astype(np.int64)
    for start in range(0, len(rows), block):
        part = rows[start : start + block]
        ok = el.eligible[part] & (el.free > 0)[None, :]
        key = np.where(ok, el.fit[part].astype(np.int64) * (m + 1) + tiebreak[None, :], -1)
        k = min(top, m)
        best = np.argpartition(-key, k - 1, axis=1)[:, :k] if k < m else np.tile(np.arange(m), (len(part), 1))
        for r, row in enumerate(part.tolist()):
            picks = best[r][key[r, best[r]] >= 0]
            out[el.seekers[row]] = {int(x) for x in picks}
    return out


BEST_KEPT = 80
"""Mentors remembered per row by ``remember_best``: enough for every caller's top (at most 60 among
the mentors who lead a group: most mentors of the large benchmark pools do)."""


def remember_best(el: Eligibility) -> None:
    """Rank every row once (best fit first) and keep its BEST_KEPT best. Ties are broken by a fixed
    permutation of the mentors that differs per row (deterministic): by mentor position, every mentee's
    list started with the same low positions among equally fitting mentors, the reassignment's options
    crowded onto them and fit fell 0.2 % at 20,000."""
    m = el.eligible.shape[1]
    k = min(BEST_KEPT, m)
    counts, mentors, fits = [], [], []
    block = max(1, BLOCK_CELLS // max(1, m))
    step = next(p for p in (1_000_003, 999_983, 7_919) if (m + 1) % p)  # coprime with m + 1: a permutation
    # the tie-break (position x step + row x 40,503) mod (m + 1), as the sum of each side's residue less
    # m + 1 when it passes m: the same values without an int64 product and modulo per cell
    by_position = (np.arange(m, dtype=np.int64) * step % (m + 1)).astype(np.int32)[None, :]
    room = (el.free > 0)[None, :]
    for start in range(0, len(el.seekers), block):
        fit = el.fit[start : start + block]
        rows = np.arange(start, start + len(fit), dtype=np.int64)[:, None]
        tiebreak = by_position + (rows * 40_503 % (m + 1)).astype(np.int32)
        np.subtract(tiebreak, m + 1, out=tiebreak, where=tiebreak > m)
        # minus the key (fit x (m + 1) + tie-break, -1 where not eligible or full), built in place
        neg = fit.astype(np.int32)
        neg *= -(m + 1)
        neg -= tiebreak
        ok = el.eligible[start : start + block] & room
        neg *= ok  # 1 where not eligible or full, by arithmetic: a masked copy (np.where, copyto) took 9 ms a block
        neg += ~ok
        best = np.argpartition(neg, k - 1, axis=1)[:, :k] if k < m else np.tile(np.arange(m), (len(neg), 1))
        chosen = np.take_along_axis(neg, best, axis=1)
        order = np.argsort(chosen, axis=1, kind="stable")
        best, chosen = np.take_along_axis(best, order, axis=1), np.take_along_axis(chosen, order, axis=1)
        keep = chosen <= 0
        counts.append(keep.sum(axis=1))
        mentors.append(best[keep])
        fits.append(el.fit[start : start + block][np.nonzero(keep)[0], best[keep]].astype(np.int64))
    starts = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
    el.best = (starts, np.concatenate(mentors).astype(np.int64), np.concatenate(fits))


def _remembered(el: Eligibility, people: list[str], leads: IntArray, top: int) -> tuple[IntArray, IntArray, IntArray]:
    """``top_arcs`` from the remembered ranking: each person's first ``top`` of its kept mentors among
    ``leads`` (the exact top among leads when at least ``top`` of its best kept ones lead)."""
    assert el.best is not None
    starts, mentor, fit = el.best
    rows = np.array([el.row[pid] for pid in people], dtype=np.int64)
    lengths = starts[rows + 1] - starts[rows]
    who = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    at = np.repeat(starts[rows] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(
        int(lengths.sum()), dtype=np.int64
    )
    lead = np.zeros(el.eligible.shape[1], dtype=bool)
    lead[leads] = True
    keep = lead[mentor[at]]
    who, at = who[keep], at[keep]
    first = np.searchsorted(who, who, side="left")
    keep = np.arange(len(who)) - first < top
    return who[keep], mentor[at[keep]], fit[at[keep]]


def _best_first(ok: BoolArray, fit: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.int64]:
    """A key per cell, smallest first: eligible cells by fit (best first), equal fits by column (the lower
    first), then the cells not eligible. Every eligible cell's key is unique, so which ones a partition
    keeps and in what order they come never depend on how numpy's kernels, which differ by CPU, order
    equal keys (a fit-only key gave other groups with numpy held to its baseline kernels:
    ``bench.probes.any_cpu``)."""
    columns = ok.shape[1]
    col = np.arange(columns, dtype=np.int64)[None, :]
    return np.where(ok, -fit.astype(np.int64) * (columns + 1) + col, np.iinfo(np.int64).max)


def top_arcs(el: Eligibility, people: list[str], leads: IntArray, top: int) -> tuple[IntArray, IntArray, IntArray]:
    """(Person index into ``people``, mentor position, fit) of each person's ``top`` best-fitting eligible
    mentors among ``leads``, as arrays, by blocks, with no Python call per person.
    With a remembered ranking (large pools), read from it instead."""
    if el.best is not None and top <= BEST_KEPT:
        return _remembered(el, people, leads, top)
    who_parts, mentor_parts, fit_parts = [], [], []
    if len(leads) and people:
        rows = np.array([el.row[pid] for pid in people], dtype=np.int64)
        block = max(1, BLOCK_CELLS // len(leads))
        k = min(top, len(leads))
        every = len(leads) == el.eligible.shape[1]
        for start in range(0, len(rows), block):
            part = rows[start : start + block]
            ok, fit = (
                (el.eligible[part], el.fit[part])
                if every
                else (el.eligible[np.ix_(part, leads)], el.fit[np.ix_(part, leads)])
            )
            key = _best_first(ok, fit)
            best = (
                np.argpartition(key, k - 1, axis=1)[:, :k] if k < len(leads) else np.tile(np.arange(k), (len(part), 1))
            )
            best = np.take_along_axis(best, np.argsort(np.take_along_axis(key, best, axis=1), axis=1), axis=1)
            keep = np.take_along_axis(ok, best, axis=1)
            r, c = np.nonzero(keep)
            cols = best[r, c]
            who_parts.append(start + r)
            mentor_parts.append(leads[cols])
            fit_parts.append(fit[r, cols].astype(np.int64))
    if not who_parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(who_parts), np.concatenate(mentor_parts).astype(np.int64), np.concatenate(fit_parts)


def _packed(cells: BoolArray) -> npt.NDArray[np.uint64]:
    """Boolean rows as 64-bit words (padded): AND and any over words is 64 cells at a time."""
    bytes_ = np.packbits(cells, axis=1)
    pad = (-bytes_.shape[1]) % 8
    if pad:
        bytes_ = np.pad(bytes_, ((0, 0), (0, pad)))
    return np.ascontiguousarray(bytes_).view(np.uint64)


def sharing_matrix(el: Eligibility, placed: list[str], left: list[str]) -> BoolArray:
    """Entry (p, q): placed person ``placed[p]`` and left-out ``left[q]`` share an eligible mentor with
    room. Over the mentors some left-out person could have, as 64-bit words by blocks of placed people
    (one product per left-out person took 2 s for 88 of 5,000; a float matrix product 9 s for 112 of
    50,000, converting the whole eligibility matrix to floats)."""
    out = np.zeros((len(placed), len(left)), dtype=bool)
    if not placed or not left:
        return out
    right = el.eligible[[el.row[q] for q in left]] & (el.free > 0)[None, :]
    cols = np.flatnonzero(right.any(axis=0))
    if not len(cols):
        return out
    # the other columns of ``right`` are all False: keeping them changes no AND, and when they are few
    # whole rows copy faster than an element-wise gather of the columns (np.ix_)
    every = 2 * len(cols) > right.shape[1]
    right_w = _packed(right if every else right[:, cols])
    # a placed person with an eligible mentor every left-out one may have (with room) shares one with each
    # of them: only the others need the AND with every left-out row (at 50,000 mentees the 112 left out
    # had 10,414 of 12,500 mentors in common, and nearly everyone shares one of those)
    common = np.bitwise_and.reduce(right_w, axis=0)
    rows = np.array([el.row[p] for p in placed], dtype=np.int64)
    block = max(1, BLOCK_CELLS // (64 * right_w.shape[1]))  # placed people whose cells are gathered at once
    each = max(1, BLOCK_CELLS // (len(left) * right_w.shape[1]))  # ... and ANDed with every left-out row
    for start in range(0, len(rows), block):
        part_rows = rows[start : start + block]
        part = _packed(el.eligible[part_rows] if every else el.eligible[np.ix_(part_rows, cols)])
        everyone = (part & common[None, :]).any(axis=1)
        out[start : start + len(part)][everyone] = True
        rest = np.flatnonzero(~everyone)
        for at in range(0, len(rest), each):
            some = rest[at : at + each]
            out[start + some] = (part[some][:, None, :] & right_w[None, :, :]).any(axis=2)
    return out
