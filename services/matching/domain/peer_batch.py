"""Peer groups, fit: the annealing's proposals judged many at a time (``judge``), as vector work.

At the annealing's temperatures almost every proposal loses fit and is turned down: on the benchmark's
500 peers, 670 of 75,000 proposals were taken (the median one lost 21 fit, against a temperature of 3
to 0.05). Judging one proposal at a time in Python (a move, else the best swap with a member of the
partner's group, with every rule) cost about 4 microseconds, so the walk's time went to proposals it
then turned down. Here a batch of proposals is judged at once against the groups as they stand:
for each, the move or the best swap (the same rules and the same gains as ``peer_anneal._Walk``), and
the caller draws its acceptance for all of them at once. Only the few accepted are then made one by one,
each checked again by the one-at-a-time judge when a group it reads changed earlier in the same batch
(so every grouping the walk visits keeps every rule, exactly as before).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.matching.domain.peer_state import ALL_LANGUAGES, GroupState
from services.matching.domain.rules import BoolArray, IntArray

NO_GAIN = np.int64(-(1 << 40))
"""The gain of a swap a rule forbids (below any real one: fits are small integers)."""


@dataclass
class Judged:
    """A batch of proposals as the groups stood: the group each peer leaves (``home``) and the one it
    joins (``target``), whether it is a move (else a swap with ``other``) and what it gains; ``valid``
    False where neither a move nor a swap keeps the rules (or both peers share a group)."""

    home: IntArray
    target: IntArray
    move: BoolArray
    other: IntArray
    gain: IntArray
    valid: BoolArray


def _without_each(langs: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """For each row of slot languages (empty slots all ones), what the others of the row speak in
    common, slot by slot: the AND of the slots before and the slots after."""
    count = langs.shape[1]
    before = np.full_like(langs, ALL_LANGUAGES)
    after = np.full_like(langs, ALL_LANGUAGES)
    if count > 1:
        before[:, 1:] = np.bitwise_and.accumulate(langs[:, :-1], axis=1)
        after[:, :-1] = np.bitwise_and.accumulate(langs[:, :0:-1], axis=1)[:, ::-1]
    out: npt.NDArray[np.uint64] = before & after
    return out


def judge(
    state: GroupState,
    glang: npt.NDArray[np.uint64],
    frozen: BoolArray,
    r: IntArray,
    q: IntArray,
    floor: npt.NDArray[np.float64] | None = None,
) -> Judged:
    """Each proposal i brings peer ``r[i]`` to the group of its partner ``q[i]``: a move when both groups
    allow it (room, compatible with every member, a language in common, the department bound; its
    own group above the minimum), else a swap with the member s of that group (not ``q[i]``, not
    locked) whose swap gains most (every rule of both groups after it), ties to the first slot. The
    same rules and gains as ``_Walk.move_gain`` and ``_Walk.best_swap``, for the whole batch at once;
    ``glang`` holds each group's common languages (all ones for an empty group).

    ``floor`` (optional): the gain each proposal must exceed to be accepted (the caller's draw). A swap
    that would not exceed it even if every member of the group could be swapped is turned down (not
    valid) before its rules are read: gains first, then the rules on the few that might pass, the same
    verdicts for a fraction of the work (most proposals lose far more than the temperature allows)."""
    pg = state.pg
    fw, cw, size, depts = state.fit_with, state.compat_with, state.size, state.depts
    a, k = state.home[r], state.home[q]
    live = a != k
    f_kr, f_ar = fw[k, r].astype(np.int64), fw[a, r].astype(np.int64)
    c_kr = cw[k, r].astype(np.int64)
    move = live & (size[k] < pg.size_max) & (size[a] > pg.size_min) & (c_kr == size[k])
    move &= (glang[k] & pg.lang[r]) != 0
    if pg.dept_limit is not None:
        move &= depts[k, pg.dept[r]] < pg.dept_limit
    # swaps: every member s of group k at once, one column per slot; gains first
    slots = state.slots[k]
    real = slots >= 0
    s = np.where(real, slots, 0)
    gain = (f_kr - f_ar)[:, None] + fw[a[:, None], s] - fw[k[:, None], s] - 2 * pg.fit[r[:, None], s].astype(np.int64)
    gain = np.where(real & (s != q[:, None]) & ~frozen[s] & live[:, None], gain, NO_GAIN)
    wanted = ~move
    if floor is not None:
        wanted &= gain.max(axis=1) > floor
    at = np.flatnonzero(wanted)
    ok = _swap_rules(state, glang, r[at], a[at], k[at], s[at], real[at], c_kr[at])
    sub = np.where(ok, gain[at], NO_GAIN)
    best = np.argmax(sub, axis=1)
    swap_gain = np.full(len(r), NO_GAIN)
    other = np.full(len(r), -1, dtype=np.int64)
    swap_gain[at] = sub[np.arange(len(at)), best]
    other[at] = s[at, best]
    valid = move | (swap_gain > NO_GAIN)
    return Judged(a, k, move, other, np.where(move, f_kr - f_ar, swap_gain), valid)


def _swap_rules(
    state: GroupState,
    glang: npt.NDArray[np.uint64],
    r: IntArray,
    a: IntArray,
    k: IntArray,
    s: IntArray,
    real: BoolArray,
    c_kr: IntArray,
) -> BoolArray:
    """Per proposal (r from group a to group k) and per slot s of group k: may r and s swap (r
    compatible with every member of k but s, s with every member of a but r; the department bound
    in both; a language in common in both)? Empty slots never."""
    pg = state.pg
    cw, size, depts = state.compat_with, state.size, state.depts
    c = pg.compat[r[:, None], s].astype(np.int64)
    ok = real & (c_kr[:, None] - c == (size[k] - 1)[:, None]) & (cw[a[:, None], s] - c == (size[a] - 1)[:, None])
    if pg.dept_limit is not None:
        dept_r, dept_s = pg.dept[r][:, None], pg.dept[s]
        ok &= (dept_s == dept_r) | (
            (depts[k, pg.dept[r]][:, None] < pg.dept_limit) & (depts[a[:, None], dept_s] < pg.dept_limit)
        )
    lang_r = pg.lang[r]
    k_without = _without_each(np.where(real, pg.lang[s], ALL_LANGUAGES))
    ok &= (k_without & lang_r[:, None]) != 0
    slots_a = state.slots[a]
    a_without = _without_each(np.where(slots_a >= 0, pg.lang[np.where(slots_a >= 0, slots_a, 0)], ALL_LANGUAGES))
    lang_a = a_without[np.arange(len(r)), np.argmax(slots_a == r[:, None], axis=1)]
    ok &= (lang_a[:, None] & pg.lang[s]) != 0
    out: BoolArray = ok
    return out
