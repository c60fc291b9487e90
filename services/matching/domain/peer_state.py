"""Peer groups as the searches see them: the problem (``PeerGroups``) and groups with per-peer sums
kept up to date (``GroupState``), read by the descent (``peer_fit``), the placing steps (``peer_place``)
and the annealing (``peer_anneal``).

A move or swap is taken only when it keeps every rule of the group it lands in: group size within the
policy's minimum and maximum, compatible with every member (the compatibility matrix holds every
pairwise rule: language in common, time-zone and level windows, which hold exactly when every pair is
within the width, reporting lines, declared conflicts, excluded pairs, one department when at most one
is allowed), one language all members speak, the department bound. The state keeps, per peer and group,
the fit with that group's members and how many of them the peer is compatible with (``groups x n``
arrays), so each peer's best move is a few vector operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.matching.domain.rules import BoolArray, IntArray

ALL_LANGUAGES = np.uint64(np.iinfo(np.uint64).max)
SWAP_GROUPS = 8
"""Swaps: each peer tries the members of the groups it gains most from joining (this many of them)."""


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

    def add(self, r: int, k: int) -> None:
        self._changed(k)
        self.home[r] = k
        self.fit_with[k] += self.pg.fit[r]
        self.compat_with[k] += self.pg.compat[r]
        self.size[k] += 1
        self.depts[k, self.pg.dept[r]] += 1
        if r not in self.members[k]:
            self.members[k].append(r)
        self.slots[k, int(np.argmin(self.slots[k]))] = r  # the first empty slot (-1)

    def remove(self, r: int, k: int) -> None:
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
        with every member, a language in common, the department bound. An empty group (one a merge
        dissolved) is not one to join: a peer moved there would be a group of one, below the minimum; a
        new group is opened only with enough members (``peer_place``)."""
        pg = self.pg
        ok: BoolArray = (self.size > 0) & (self.size < pg.size_max) & (self.compat_with[:, r] == self.size)
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
            self.add(r, len(self.members) - 1)

    def move(self, r: int, k: int) -> None:
        self.remove(r, int(self.home[r]))
        self.add(r, k)

    def swap(self, r: int, q: int) -> None:
        a, k = int(self.home[r]), int(self.home[q])
        self.remove(r, a)
        self.remove(q, k)
        self.add(r, k)
        self.add(q, a)


def _top_stable(values: IntArray, count: int) -> IntArray:
    """The positions of the ``count`` largest values, largest first, ties in position order: what
    ``np.argsort(-values, kind="stable")[:count]`` gives, without sorting every value (a peer's best
    swap looked at its top 8 of up to 1,669 groups and sorted them all)."""
    if len(values) <= count:
        return np.argsort(-values, kind="stable")
    threshold = np.partition(values, len(values) - count)[len(values) - count]  # the count-th largest
    candidates = np.flatnonzero(values >= threshold)  # every value above it, and its ties, in position order
    return candidates[np.argsort(-values[candidates], kind="stable")[:count]]
