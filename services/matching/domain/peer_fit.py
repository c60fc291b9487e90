"""Peer groups, fit level: moves and swaps between groups that keep the placed set and every rule.

A peer group's fit counts every pair in it, so fit is a clique-partitioning objective: CP-SAT improves
it slowly past a few dozen peers (the pruned model only sees each peer's best partners), and on large
pools the greedy's groups are the result. Moving a peer to another group, or swapping two peers of two
groups, keeps who is placed (so the placed count and the lottery keep their values exactly); only fit
changes. A move or swap is taken only when it keeps every rule of the group it lands in: group size
within the policy's minimum and maximum, compatible with every member (the compatibility matrix holds
every pairwise rule: language in common, time-zone and level windows, which hold exactly when every
pair is within the width, reporting lines, declared conflicts, excluded pairs, one department when at
most one is allowed), one language all members speak, the department bound.

The search keeps, per peer and group, the fit with that group's members and how many of them the
peer is compatible with (``n x groups`` arrays), so each peer's best move is a few vector operations.
Deterministic: a fixed order of peers, best improvement per peer, rounds until none improves or the
work bound; the wall-clock deadline is checked between rounds only, and a round the clock interrupts
is not started, so the result is always the end of a complete round. Locked peers never move.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.matching.domain.rules import BoolArray, IntArray

MAX_ROUNDS = 10
ROUND_WORK = 40_000
"""Rounds of the search: at most ROUND_WORK / peers (at least 3, at most MAX_ROUNDS), a deterministic
amount of work (on 2,000 benchmark peers, 90 % of the gain came in the first round, 99 % by the fifth;
the descent after the annealing gains again: 1.9 % on 10,000 peers after 100,000 proposals). Sized so
that the runs end well before their wall-clock deadline, where the clock would cut them and the same
seed would no longer give the same groups: with 60,000 and 30 the benchmark's 2,000 peers took 7.7-9.1 s
of their 10 s (deadline 8.5 s) on an idle machine, and were cut in 3 of 4 runs (2026-11-30); now 5.4 s,
fit 35,201 against 35,213 uncut. 10,000 peers: 33.3 s of 60 (deadline 51) instead of 40.5, fit 189,761
against 190,202 (4 rounds instead of 6); 500 peers unchanged (7,821). The same rounds (the same groups)
now cost less (peers checked in batches, ``quiet_peers``): the whole run took 3.7 s of CPU at 2,000
peers instead of 7.4, 24 s at 10,000 instead of 42 (2026-11-30, back to back on a machine loaded with
other work), so a machine twice as slow still ends the same rounds before the deadline."""
ALL_LANGUAGES = np.uint64(np.iinfo(np.uint64).max)
MOVE_ONE_GROUPS = 50
"""Placing a peer by moving a member elsewhere: the groups it fits best are tried, this many."""
SWAP_GROUPS = 8
"""Swaps: each peer tries the members of the groups it gains most from joining (this many of them)."""
LOOK_BATCH = 64
"""The descent checks this many peers at once for a move or swap that might gain (``quiet_peers``)."""


@dataclass
class PeerGroups:
    """The problem: rows are peers; ``compat[a, b]``: a and b may share a group; ``fit[a, b]``: their fit
    (both symmetric, as the rules are)."""

    compat: BoolArray
    fit: npt.NDArray[np.integer]
    lang: npt.NDArray[np.uint64]
    """Each peer's languages as bits (``require_language``); all ones when a language is not required."""
    dept: IntArray
    size_min: int
    size_max: int
    dept_limit: int | None
    frozen: frozenset[int] = frozenset()

    def total(self, groups: Sequence[Sequence[int]]) -> int:
        return sum(int(self.fit[np.ix_(g, g)].sum()) // 2 for g in groups)


def language_bits(languages: Sequence[Sequence[str]]) -> npt.NDArray[np.uint64]:
    """Each row's languages as a bit set over the first 64 languages; more than 64 distinct languages
    get all bits (the language rule is then left to the compatibility matrix and not improved on)."""
    vocab = {tag: i for i, tag in enumerate(sorted({t for v in languages for t in v}))}
    if len(vocab) > 64:
        return np.full(len(languages), ALL_LANGUAGES, dtype=np.uint64)
    out = np.zeros(len(languages), dtype=np.uint64)
    for r, tags in enumerate(languages):
        for tag in tags:
            out[r] |= np.uint64(1) << np.uint64(vocab[tag])
    return out


Columns = tuple[npt.NDArray[np.int32], npt.NDArray[np.int16]]
"""A peer's fit with, and compatible count with, every group (``GroupState.columns``)."""


class GroupState:
    """Groups with the per-peer sums the search reads (fit with, and compatible with, each group)."""

    def __init__(self, pg: PeerGroups, groups: Sequence[Sequence[int]]) -> None:
        self.pg = pg
        n, g = len(pg.compat), len(groups)
        self.members = [list(x) for x in groups]
        self.home = np.full(n, -1, dtype=np.int64)
        # per group, each peer's fit with its members and how many of them it is compatible with: one
        # row per group, so adding a member is a contiguous row update (fit and compat are symmetric;
        # a column per group, strided, took 120 s of updates at 10,000 peers)
        self.fit_with = np.zeros((g, n), dtype=np.int32)  # sums of at most size_max fits; int32: half the
        # memory traffic of every update and read (at 10,000 peers a row is 10,000 values)
        self.compat_with = np.zeros((g, n), dtype=np.int16)
        self.size = np.zeros(g, dtype=np.int64)
        n_dept = int(pg.dept.max()) + 1 if len(pg.dept) else 1
        self.depts = np.zeros((g, n_dept), dtype=np.int64)
        self.slots = np.full((g, pg.size_max), -1, dtype=np.int64)
        """Each group's members as a row (-1: empty), for vector work over the members of many groups."""
        self.clock = 0
        self.touched = np.zeros(g, dtype=np.int64)
        """When each group last changed (``clock`` counts changes): what a peer's last look saw may
        still hold for the groups unchanged since (``nothing_to_gain``)."""
        self._langs: npt.NDArray[np.uint64] | None = None
        self._stale: set[int] = set()
        """``langs()`` is kept between calls and only the groups changed since are computed again: every
        placing step read it, and computing it whole each time took 7 s at 10,000 peers."""
        # every group at once (what ``_add`` member by member gives: a row update per peer took a
        # second at 10,000 peers, and every step of the search builds its state)
        for k, ms in enumerate(self.members):
            if ms:
                self.home[ms] = k
                self.fit_with[k] = pg.fit[ms].sum(axis=0)
                self.compat_with[k] = pg.compat[ms].sum(axis=0)
                self.size[k] = len(ms)
                self.slots[k, : len(ms)] = ms
                np.add.at(self.depts[k], pg.dept[ms], 1)

    def _changed(self, k: int) -> None:
        self._stale.add(k)
        self.clock += 1
        self.touched[k] = self.clock

    def _add(self, r: int, k: int) -> None:
        self._changed(k)
        self.home[r] = k
        self.fit_with[k] += self.pg.fit[r]
        self.compat_with[k] += self.pg.compat[r]
        self.size[k] += 1
        self.depts[k, self.pg.dept[r]] += 1
        if r not in self.members[k]:
            self.members[k].append(r)
        self.slots[k, int(np.argmin(self.slots[k]))] = r  # the first empty slot (-1)

    def _remove(self, r: int, k: int) -> None:
        self._changed(k)
        self.home[r] = -1
        self.fit_with[k] -= self.pg.fit[r]
        self.compat_with[k] -= self.pg.compat[r]
        self.size[k] -= 1
        self.depts[k, self.pg.dept[r]] -= 1
        self.members[k].remove(r)
        self.slots[k][self.slots[k] == r] = -1

    def group_lang(self, k: int, without: int = -1) -> np.uint64:
        bits = ALL_LANGUAGES
        for r in self.members[k]:
            if r != without:
                bits &= self.pg.lang[r]
        return bits

    def columns(self, r: int) -> Columns:
        """Peer r's fit with, and compatible count with, every group, as contiguous copies: a column of
        the per-group rows is a strided read (one cache line per group), so a peer's best move and best
        swap read it once (at 10,000 peers and 1,669 groups the four reads were half the descent)."""
        return self.fit_with[:, r].copy(), self.compat_with[:, r].copy()

    def best_move(self, r: int, langs: npt.NDArray[np.uint64], cols: Columns | None = None) -> tuple[int, int]:
        """The group whose joining gains most for peer r (and the gain), or (-1, 0)."""
        pg, a = self.pg, int(self.home[r])
        if self.size[a] <= pg.size_min:
            return -1, 0
        fit_col, compat_col = cols if cols is not None else self.columns(r)
        # the groups that gain first (few, late in the descent), then the rules on those only
        here = fit_col[a]
        pos = np.flatnonzero(fit_col > here)
        if not len(pos):
            return -1, 0
        size = self.size[pos]
        ok = (size < pg.size_max) & (compat_col[pos] == size) & ((langs[pos] & pg.lang[r]) != 0)
        if pg.dept_limit is not None:
            ok &= self.depts[pos, pg.dept[r]] < pg.dept_limit
        if not ok.any():
            return -1, 0
        pos = pos[ok]
        gain = fit_col[pos] - here
        best = int(np.argmax(gain))
        return int(pos[best]), int(gain[best])

    def swap_window(self, r: int, cols: Columns) -> IntArray:
        """The groups whose members r may swap with: the SWAP_GROUPS groups r gains most from joining
        (most first, ties in group order) among those r is compatible with but for one member."""
        fit_col, compat_col = cols
        a = int(self.home[r])
        near = compat_col >= self.size - 1
        near[a] = False
        pos = np.flatnonzero(near)
        pull = fit_col[pos] - fit_col[a]
        window: IntArray = pos[_top_stable(pull, SWAP_GROUPS)]
        return window

    def best_swap(self, r: int, cols: Columns | None = None, window: IntArray | None = None) -> tuple[int, int]:
        """The peer of another group whose swap with r gains most (and the gain), or (-1, 0): the
        members of the groups of r's ``swap_window``, scored at once; the rules checked in order of
        gain, so the first that passes is the best."""
        pg, a = self.pg, int(self.home[r])
        fit_col, compat_col = cols if cols is not None else self.columns(r)
        top = window if window is not None else self.swap_window(r, (fit_col, compat_col))
        if not len(top):
            return -1, 0
        qs = self.slots[top].ravel()
        ks = np.repeat(top, pg.size_max)
        keep = qs >= 0
        qs, ks = qs[keep], ks[keep]
        f = pg.fit[r, qs].astype(np.int64)
        gain = fit_col[ks] - f - fit_col[a] + self.fit_with[a, qs] - f - self.fit_with[ks, qs]
        gains = np.flatnonzero(gain > 0)  # the swaps that gain first, then the rules on those only
        if not len(gains):
            return -1, 0
        qs, ks, gain = qs[gains], ks[gains], gain[gains]
        c = pg.compat[r, qs].astype(np.int64)
        ok = (compat_col[ks] - c == self.size[ks] - 1) & (self.compat_with[a, qs] - c == self.size[a] - 1)
        if pg.dept_limit is not None:
            other = pg.dept[qs] != pg.dept[r]
            ok &= ~other | (
                (self.depts[ks, pg.dept[r]] + 1 <= pg.dept_limit) & (self.depts[a, pg.dept[qs]] + 1 <= pg.dept_limit)
            )
        if not ok.any():
            return -1, 0
        lang_a = self.group_lang(a, without=r)
        for i in np.flatnonzero(ok)[np.argsort(-gain[ok], kind="stable")]:
            q, k = int(qs[i]), int(ks[i])
            if q in pg.frozen:
                continue
            if (self.group_lang(k, without=q) & pg.lang[r]) == 0 or (lang_a & pg.lang[q]) == 0:
                continue
            return q, int(gain[i])
        return -1, 0

    def quiet_peers(self, rows: IntArray, langs: npt.NDArray[np.uint64]) -> tuple[BoolArray, list[IntArray], Columns]:
        """For each of ``rows`` (placed peers), as the groups stand now: whether a look (``best_move``,
        ``best_swap``) might find a move or swap that gains (False: certainly none), and its swap
        window (``swap_window``). One vector pass over all of them: a look per peer is some sixty
        small numpy operations, and late in the descent almost every look finds nothing. The swaps
        are checked without the language rule and locked peers, so True may still find nothing. Also
        the peers' ``columns`` as they stand now, one row per peer (see ``columns_since``)."""
        pg, size = self.pg, self.size
        g, count = len(self.members), len(rows)
        home, cols = self.home[rows], np.arange(count)
        # one row per peer, every group along it (contiguous): the rows come in order, so a slice of
        # the per-group rows, transposed, then the peers wanted
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        fit = np.ascontiguousarray(self.fit_with[:, lo:hi].T)
        compat = np.ascontiguousarray(self.compat_with[:, lo:hi].T)
        if hi - lo != count:
            fit, compat = fit[rows - lo], compat[rows - lo]
        here = fit[cols, home]
        size16 = size.astype(np.int16)
        move = (fit > here[:, None]) & (compat == size16) & (size < pg.size_max)
        move &= (langs & pg.lang[rows][:, None]) != 0
        if pg.dept_limit is not None:
            move &= (self.depts < pg.dept_limit).T[pg.dept[rows]]
        maybe: BoolArray = move.any(axis=1) & (size[home] > pg.size_min)
        # the window: near groups by pull, most first, then the lower group number (``_top_stable``)
        near = compat >= size16 - 1
        near[cols, home] = False
        scale, none = 1 << 21, -(1 << 62)  # (not int64 min: its negation overflows to itself)
        pull = (fit - here[:, None]).astype(np.int64)
        key = np.where(near, pull * scale + (scale - 1 - np.arange(g, dtype=np.int64)), none)
        width = min(SWAP_GROUPS, g)
        part = np.argpartition(-key, width - 1, axis=1)[:, :width] if g > width else np.argsort(-key, axis=1)
        part_key = np.take_along_axis(key, part, axis=1)
        order = np.argsort(-part_key, axis=1, kind="stable")
        top, top_key = np.take_along_axis(part, order, axis=1).T, np.take_along_axis(part_key, order, axis=1).T
        valid = top_key > none
        windows: list[IntArray] = [top[:, b][valid[:, b]].astype(np.int64) for b in range(count)]
        # swaps with the windows' members: gain and every rule but the language and locks
        qs = self.slots[top]  # (width, count, size_max)
        ks = np.broadcast_to(top[:, :, None], qs.shape)
        there = (qs >= 0) & valid[:, :, None]
        qs = np.where(there, qs, 0)
        rb, ab = rows[None, :, None], home[None, :, None]
        f = pg.fit[rb, qs].astype(np.int64)
        gain = self.fit_with[ks, rb] - f - here[None, :, None] + self.fit_with[ab, qs] - f - self.fit_with[ks, qs]
        c = pg.compat[rb, qs].astype(np.int64)
        swap = there & (gain > 0) & (self.compat_with[ks, rb] - c == size[ks] - 1)
        swap &= self.compat_with[ab, qs] - c == size[ab] - 1
        if pg.dept_limit is not None:
            other = pg.dept[qs] != pg.dept[rb]
            swap &= ~other | (
                (self.depts[ks, pg.dept[rb]] + 1 <= pg.dept_limit) & (self.depts[ab, pg.dept[qs]] + 1 <= pg.dept_limit)
            )
        maybe |= swap.any(axis=(0, 2))
        return maybe, windows, (fit, compat)

    def columns_since(self, r: int, since: int, then: Columns) -> Columns:
        """Peer r's ``columns`` from ``then`` (its columns at ``clock == since``) with the groups changed
        since read again: the same values, without a strided read of every group (at 10,000 peers a
        column is 1,669 cache misses)."""
        fit_col, compat_col = then[0].copy(), then[1].copy()
        if self.clock != since:
            changed = np.flatnonzero(self.touched > since)
            fit_col[changed] = self.fit_with[changed, r]
            compat_col[changed] = self.compat_with[changed, r]
        return fit_col, compat_col

    def nothing_to_gain(self, r: int, since: int, window: IntArray, langs: npt.NDArray[np.uint64]) -> bool:
        """Is it certain, without a full look, that peer r still has no move or swap that gains, given
        that its look at ``clock == since`` found none (with ``window``, its swap window then)? What a
        move or swap to group k gains, and whether it keeps the rules, depends only on groups k and r's
        own: so if r's group is unchanged since, the groups unchanged since still offer nothing, and
        only the changed ones are checked, as moves, and as groups that might enter the swap window.
        False means "look again" (``best_move``, ``best_swap``): the answer never differs from a full
        look. In the descent's later rounds few groups change, and this check costs a fraction of a
        look (at 2,000 peers, rounds 4-10 moved 13-106 peers of 2,000)."""
        pg, a = self.pg, int(self.home[r])
        if self.touched[a] > since:
            return False
        changed = np.flatnonzero(self.touched > since)
        if not len(changed):
            return True
        if (self.touched[window] > since).any():
            return False
        fit_t, compat_t, size_t = self.fit_with[changed, r], self.compat_with[changed, r], self.size[changed]
        fit_a = int(self.fit_with[a, r])
        if self.size[a] > pg.size_min:  # a move into a changed group that gains and keeps the rules?
            ok = (fit_t > fit_a) & (size_t < pg.size_max) & (compat_t == size_t) & ((langs[changed] & pg.lang[r]) != 0)
            if pg.dept_limit is not None:
                ok &= self.depts[changed, pg.dept[r]] < pg.dept_limit
            if ok.any():
                return False
        near = compat_t >= size_t - 1
        if len(window) < SWAP_GROUPS:  # the window held every eligible group: a changed one would join it
            return not near.any()
        threshold = int(self.fit_with[int(window[-1]), r]) - fit_a  # the window's last pull, unchanged
        return not (near & (fit_t - fit_a >= threshold)).any()  # a tie might enter too: look again

    def fits_in(self, r: int, langs: npt.NDArray[np.uint64], without: int = -1) -> BoolArray:
        """Groups peer r may join as they are (or with ``without`` gone from its group): room, compatible
        with every member, a language in common, the department bound."""
        pg = self.pg
        ok: BoolArray = (self.size < pg.size_max) & (self.compat_with[:, r] == self.size)
        ok &= (langs & pg.lang[r]) != 0
        if pg.dept_limit is not None:
            ok &= self.depts[:, pg.dept[r]] < pg.dept_limit
        if without >= 0:
            ok[int(self.home[without])] = False
        return ok

    def langs(self) -> npt.NDArray[np.uint64]:
        """Each group's common languages (a copy: callers update it as they move peers)."""
        if self._langs is None:
            self._langs = np.array([self.group_lang(k) for k in range(len(self.members))], dtype=np.uint64)
        else:
            opened = len(self.members) - len(self._langs)  # groups are opened, never dropped
            if opened > 0:
                self._langs = np.concatenate([self._langs, np.zeros(opened, dtype=np.uint64)])
            for k in self._stale:
                self._langs[k] = self.group_lang(k)
        self._stale.clear()
        return self._langs.copy()

    def open_group(self, rows: list[int]) -> None:
        """A new group of ``rows`` (none of them placed)."""
        n = len(self.pg.compat)
        self.members.append([])
        self.fit_with = np.vstack([self.fit_with, np.zeros((1, n), dtype=np.int32)])
        self.compat_with = np.vstack([self.compat_with, np.zeros((1, n), dtype=np.int16)])
        self.size = np.append(self.size, 0)
        self.depts = np.vstack([self.depts, np.zeros((1, self.depts.shape[1]), dtype=np.int64)])
        self.slots = np.vstack([self.slots, np.full((1, self.pg.size_max), -1, dtype=np.int64)])
        self.touched = np.append(self.touched, self.clock)
        for r in rows:
            self._add(r, len(self.members) - 1)

    def join(self, u: int, langs: npt.NDArray[np.uint64]) -> bool:
        """Unplaced peer u joins the best-fitting group it may join as it is."""
        ok = self.fits_in(u, langs)
        if not ok.any():
            return False
        pos = np.flatnonzero(ok)
        self._add(u, int(pos[np.argmax(self.fit_with[pos, u])]))
        return True

    def join_by_moving_one(self, u: int, langs: npt.NDArray[np.uint64]) -> bool:
        """Unplaced peer u takes the place of a member v of a group, v moving to another group it may
        join (u may join that group without v: compatible with the others, language, departments)."""
        pg = self.pg
        near = np.flatnonzero(self.compat_with[:, u] >= self.size - 1)
        for k in near[np.argsort(-self.fit_with[near, u], kind="stable")][:MOVE_ONE_GROUPS]:
            k = int(k)
            for v in sorted(self.members[k]):
                if v in pg.frozen or int(self.compat_with[k, u]) - int(pg.compat[u, v]) != self.size[k] - 1:
                    continue
                if (self.group_lang(k, without=v) & pg.lang[u]) == 0:
                    continue
                same = int(pg.dept[v] == pg.dept[u])
                if pg.dept_limit is not None and self.depts[k, pg.dept[u]] - same >= pg.dept_limit:
                    continue
                elsewhere = self.fits_in(v, langs, without=v)
                if not elsewhere.any():
                    continue
                pos = np.flatnonzero(elsewhere)
                self.move(v, int(pos[np.argmax(self.fit_with[pos, v])]))
                self._add(u, k)
                return True
        return False

    def open_with(self, u: int, waiting: Sequence[int]) -> bool:
        """A new group around unplaced peer u: other unplaced peers first (in ``waiting`` order), then
        members of groups above the minimum, each compatible with everyone chosen."""
        pg = self.pg
        chosen, lang = [u], pg.lang[u]
        depts = {int(pg.dept[u]): 1}

        def fits(r: int) -> bool:
            if not all(pg.compat[r, c] for c in chosen) or (lang & pg.lang[r]) == 0:
                return False
            return pg.dept_limit is None or depts.get(int(pg.dept[r]), 0) < pg.dept_limit

        def take(r: int) -> None:
            nonlocal lang
            chosen.append(r)
            lang = lang & pg.lang[r]
            depts[int(pg.dept[r])] = depts.get(int(pg.dept[r]), 0) + 1

        for r in waiting:
            if len(chosen) >= pg.size_max:
                break
            if r != u and self.home[r] < 0 and r not in pg.frozen and fits(r):
                take(r)
        donors: dict[int, int] = {}
        if len(chosen) < pg.size_min:
            for r in map(int, np.flatnonzero(pg.compat[u] & (self.home >= 0))):
                k = int(self.home[r])
                if r in pg.frozen or self.size[k] - donors.get(k, 0) <= pg.size_min or not fits(r):
                    continue
                take(r)
                donors[k] = donors.get(k, 0) + 1
                if len(chosen) >= pg.size_min:
                    break
        if len(chosen) < pg.size_min:
            return False
        for r in chosen:
            if self.home[r] >= 0:
                self._remove(r, int(self.home[r]))
        self.open_group(chosen)
        return True

    def move(self, r: int, k: int) -> None:
        self._remove(r, int(self.home[r]))
        self._add(r, k)

    def swap(self, r: int, q: int) -> None:
        a, k = int(self.home[r]), int(self.home[q])
        self._remove(r, a)
        self._remove(q, k)
        self._add(r, k)
        self._add(q, a)


def _top_stable(values: IntArray, count: int) -> IntArray:
    """The positions of the ``count`` largest values, largest first, ties in position order: what
    ``np.argsort(-values, kind="stable")[:count]`` gives, without sorting every value (a peer's best
    swap looked at its top 8 of up to 1,669 groups and sorted them all)."""
    if len(values) <= count:
        return np.argsort(-values, kind="stable")
    threshold = np.partition(values, len(values) - count)[len(values) - count]  # the count-th largest
    candidates = np.flatnonzero(values >= threshold)  # every value above it, and its ties, in position order
    return candidates[np.argsort(-values[candidates], kind="stable")[:count]]


def place_more(pg: PeerGroups, groups: Sequence[Sequence[int]], waiting: Sequence[int]) -> list[list[int]]:
    """More peers placed, none removed: each peer of ``waiting`` (unplaced, in lottery order) joins a
    group it may join, else takes the place of a member who can move to another group, else opens a
    new group with other unplaced peers and members of groups above the minimum. Every group keeps every
    rule; deterministic (fixed orders). Locked peers are neither placed nor moved here."""
    state = GroupState(pg, groups)
    for u in waiting:
        if state.home[u] >= 0 or u in pg.frozen:
            continue
        langs = state.langs()
        if not (state.join(u, langs) or state.join_by_moving_one(u, langs)):
            state.open_with(u, waiting)
    return [sorted(ms) for ms in state.members if ms]


def merge_groups(pg: PeerGroups, groups: Sequence[Sequence[int]]) -> list[list[int]]:
    """Fewer, larger groups where fit gains: a group whose members can each join another group as it
    is (room, every rule) is dissolved when what they gain there exceeds the group's own fit. Moves
    and swaps keep the number of groups, and a group of six has 15 pairs where two of three have 6: on
    15 peers the descent kept groups of 6, 3 and 3 (fit 89) where two of 6 give the optimum, 112.
    Smallest groups first, in row order; nobody leaves the placed set; locked peers stay."""
    state = GroupState(pg, groups)
    for k in sorted(range(len(state.members)), key=lambda k: (len(state.members[k]), k)):
        members = sorted(state.members[k])
        if not members or any(r in pg.frozen for r in members):
            continue
        own = int(pg.fit[np.ix_(members, members)].sum()) // 2
        if int((pg.size_max - state.size).sum()) - (pg.size_max - len(members)) < len(members):
            continue
        langs = state.langs()
        moved: list[int] = []
        gain = 0
        for r in members:
            ok = state.fits_in(r, langs)
            ok[k] = False
            if not ok.any():
                break
            pos = np.flatnonzero(ok)
            j = int(pos[np.argmax(state.fit_with[pos, r])])
            gain += int(state.fit_with[j, r])
            state.move(r, j)
            langs[j] = state.group_lang(j)
            moved.append(r)
        if len(moved) < len(members) or gain <= own:
            for r in reversed(moved):  # back to where they were: the group as it stood keeps every rule
                state.move(r, k)
    return [sorted(ms) for ms in state.members if ms]


def search_rounds(peers: int) -> int:
    return min(MAX_ROUNDS, max(3, ROUND_WORK // max(1, peers)))


def polish_peer_groups(
    pg: PeerGroups, groups: Sequence[Sequence[int]], deadline: float | None = None
) -> tuple[list[list[int]], bool]:
    """Better-fitting groups of the same peers: rounds of best moves and swaps per peer (in row order),
    until a round improves nothing, ``search_rounds`` ran, or the deadline passed (checked between
    rounds; the groups of the last complete round stand). Every group keeps every rule. Returns the
    groups and whether the clock cut the search short."""
    if not groups:
        return [], False
    state = GroupState(pg, groups)
    placed = sum(len(g) for g in groups)
    for _ in range(search_rounds(placed)):
        if deadline is not None and time.perf_counter() > deadline:
            return [sorted(ms) for ms in state.members if ms], True
        improved = False
        langs = state.langs()
        order = np.flatnonzero(state.home >= 0)
        for start in range(0, len(order), LOOK_BATCH):
            batch = order[start : start + LOOK_BATCH]
            since = state.clock
            maybe, windows, (fit_rows, compat_rows) = state.quiet_peers(batch, langs)
            for b, r in enumerate(map(int, batch)):
                if r in pg.frozen:
                    continue
                if not maybe[b] and state.nothing_to_gain(r, since, windows[b], langs):
                    continue
                improved |= _look(state, r, langs, state.columns_since(r, since, (fit_rows[b], compat_rows[b])))
        if not improved:
            break
    return [sorted(ms) for ms in state.members if ms], False


def _look(state: GroupState, r: int, langs: npt.NDArray[np.uint64], cols: Columns) -> bool:
    """Peer r's best move or swap, made if it gains (``langs`` kept up to date); whether it did."""
    k, gain = state.best_move(r, langs, cols)
    q, swap_gain = state.best_swap(r, cols)
    if gain <= 0 and swap_gain <= 0:
        return False
    touched = (int(state.home[r]), k if gain >= swap_gain else int(state.home[q]))
    if gain >= swap_gain:
        state.move(r, k)
    else:
        state.swap(r, q)
    for t in touched:
        langs[t] = state.group_lang(t)
    return True
