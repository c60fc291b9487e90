"""Peer groups, fit: simulated annealing over swaps and moves of peers between groups.

The descent in ``peer_fit`` (best move or swap per peer, in rounds) stops in a local optimum: on six
30-peer pools whose optimum was proven by an exact set partitioning it ended 13-23 % below it, and on
the benchmark's 500-10,000 peers it used a tenth of the time limit. Annealing walks on from there: it
proposes, for a random peer r, to join the group of one of its best-fitting compatible partners
(a move when both groups allow it, else a swap with the member of that group whose leaving costs
least), and takes a proposal that loses fit with probability exp(gain / T), T falling geometrically.
Every proposal keeps every rule of both groups (the same checks as the descent: size, compatible with
every member, one common language, the department bound), so every state it visits is a valid
grouping of the same peers: placed and the lottery keep their values exactly, only fit changes.

Pools of more than ``BATCHED_GROUPS`` groups judge their proposals in batches (``peer_batch``: almost
every proposal is turned down, and judging them one at a time in Python was where the time went);
smaller pools walk one proposal at a time (``_anneal_one_at_a_time``).

Deterministic: the proposals come from ``numpy.random.default_rng(seed)`` (doubles only; small pools:
``random.Random(seed)``) and their number is fixed by the pool's size and the limit
(``anneal_budget``), never by the clock; a batch's size is fixed by the number of groups. The
wall-clock deadline is checked only between blocks of ``BLOCK`` proposals; the best grouping seen at a
block's end stands, so a loaded machine returns the grouping of an earlier block, the same one for
the same input and seed.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from services.matching.domain.peer_batch import judge
from services.matching.domain.peer_fit import polish_peer_groups
from services.matching.domain.peer_state import GroupState, PeerGroups

PER_PEER = 1_800
"""Proposals per placed peer at most (pools of more than ``BATCHED_GROUPS`` groups): on 500 peers, six
seeds (2026-2031) of 900,000 proposals ended at 8,058 on average, of 1,200,000 at 8,048: no gain."""
PER_SECOND = 400_000
"""Proposals per second of the time limit at most, up to ``FULL_RATE_PEERS`` peers; above, fewer by the
square root of the ratio, as a batched proposal costs more on large pools (CPU microseconds a proposal,
2026-12-01, this machine: 0.4 at 500 peers, 0.6 at 2,000, 1.4 at 10,000), so that preparation, the
descent, building and validating the result fit in the limit too, with room for a machine twice as
slow: 500 peers get 898,200 proposals (0.4 s of CPU), 2,000 get 2.0 million (1.2 s), 10,000 get 5.4
million (7.5 s); each whole run then takes about a fifth to a quarter of its limit in CPU. History:
one at a time (``_anneal_one_at_a_time``), 25,000 a second up to 1,000 peers (75,000 at 500, 125,000 at
2,000, 150,000 at 10,000); 40,000 gained 0.2-0.5 % but brought the 2,000 and 10,000 runs to their
wall-clock safety stop on a loaded machine (2026-11-30, peer4). Judged in batches (``peer_batch``) a
proposal costs a tenth to a fifth of what it did. 300,000 a second (1.5 million proposals at 2,000
peers, 4.0 million at 10,000) gave 35,929 and 195,715 on average (six and two seeds); 400,000 gives
36,017 and 196,291, for 0.1 and 1.4 s more CPU."""
FULL_RATE_PEERS = 500
BLOCK = 4_096
"""The best grouping is kept between blocks of this many proposals, and the clock checked there."""
CLOCK_READINGS = 32
"""The clock is read at most about this many times a walk (every so many blocks): each reading costs
little, but a clock that runs fast (a loaded machine, or the tests' virtual clock of 10 ms a reading)
sees time go by the reading; with 360,000 proposals for 200 peers (88 blocks) a reading per block
used that clock's 85 readings before the deadline. The blocks, and so the groups, are as they were."""
BATCH_PER_GROUP = 12
BATCH_MOST = 1_024
BATCH_LEAST = 16
"""Proposals judged at once (``peer_batch.judge``): this many per group, within these bounds. A
proposal turned down was judged against groups up to a batch old; with about one proposal in a
hundred taken, a batch sees a few changes. On 500 peers (85 groups), four seeds of 300,000 proposals:
batches of 1, 16, 64 and 256 ended at 7,950, 7,973, 7,951 and 7,972 on average (the seeds spread
+-50); 1,000,000 in batches of 256, 512, 1,024 and 4,096: 8,055, 8,061, 8,069, 8,036, in 0.83, 0.66,
0.57 and 0.49 s; at 2,000 peers 4,096 lost 0.4 % against 1,024 for no time saved."""
FLOOR_MARGIN = 1e-6
"""``judge`` turns down a swap whose every member's gain is at most T ln(draw) less this: below what the
acceptance (draw < exp(gain / T)) could take, whatever the rounding of exp and log."""
BATCHED_GROUPS = 20
"""Pools of at most this many groups keep the walk of one proposal at a time (``_anneal_one_at_a_time``)
and its budget (``SMALL_PER_PEER``, ``SMALL_PER_SECOND``): there a batch would be judged against groups
most of which it changes, and the vector work of a small batch costs more than the Python it replaces
(30 peers, seeds 2020-2031: batches of 4 per group reached the proven optimum 235 for 11 of 12 in
1.05 s of CPU a run, where one at a time reaches it for 12 of 12 in 0.60 s)."""
SMALL_PER_PEER = 600
SMALL_PER_SECOND = 25_000
SMALL_BLOCK = 4_000
PARTNERS = 24
"""A proposal brings a peer to the group of one of its this many best-fitting compatible partners."""
T_START = 3.0
T_END = 0.05


DESCENT_FIRST_MOST = 1_000
WITHOUT_DESCENT = 1.5
"""Pools of more than ``DESCENT_FIRST_MOST`` placed peers (and more than ``BATCHED_GROUPS`` groups) skip
the descent before the walk (``descend_first``) and get this many times the walk's proposals instead:
the walk's first, hot stretch does what the descent did, for less. Seeds 2026-2029 at 2,000 peers: the
descent then 2.0 million proposals ended at 36,038 on average in 1.83 s of CPU, 3.0 million from the
merged groups at 36,132 (+0.26 %) in 1.98 s; 10,000 peers, seeds 2026-2027: 196,291 in 11.2 s, 7.9
million from the merged groups 197,125 (+0.4 %) in 11.1 s (the descent alone took 3.9 s there). At
500 peers the descent pays: the same 898,200 proposals without it ended at 8,033 against 8,066 (six
seeds), so smaller pools keep it."""


def descend_first(peers: int, groups: int) -> bool:
    """Whether the descent runs before the walk (see ``DESCENT_FIRST_MOST``)."""
    return groups <= BATCHED_GROUPS or peers <= DESCENT_FIRST_MOST


def anneal_budget(peers: int, groups: int, time_limit: float) -> int:
    """How many proposals a pool gets: a count, so the same input gives the same walk."""
    if groups <= BATCHED_GROUPS:
        return int(min(SMALL_PER_PEER * peers, SMALL_PER_SECOND * time_limit))
    rate = PER_SECOND * math.sqrt(min(1.0, FULL_RATE_PEERS / max(1, peers)))
    budget = min(PER_PEER * peers, rate * time_limit)
    return int(budget if descend_first(peers, groups) else WITHOUT_DESCENT * budget)


def _partners(pg: PeerGroups, rows: Sequence[int], placed: np.ndarray) -> list[list[int]]:
    """Each row's best-fitting compatible placed partners (positive fit), best first, ties to the lower
    row. The key is unique (fit, then the row), so which of several equal fits make the cut does not
    depend on how ``argpartition`` breaks ties: with equal keys it chose other partners on a CPU with
    AVX-512 (NumPy's SIMD sort) than without, and the benchmark's 500 peers ended at 7,798 or 7,821."""
    n = len(pg.compat)
    out: list[list[int]] = []
    # int32 keys when they fit (half the memory traffic of int64: at 10,000 peers this took 1.1 s)
    dtype = np.int32 if (int(pg.fit.max(initial=0)) + 1) * n < 2**31 else np.int64
    later = np.arange(n - 1, -1, -1, dtype=dtype)  # n-1 for row 0 ... 0 for the last: the lower row wins
    for start in range(0, len(rows), 512):
        block = np.asarray(rows[start : start + 512], dtype=np.int64)
        neg: npt.NDArray[np.signedinteger[Any]] = pg.fit[block].astype(dtype, copy=False)  # a copy already
        np.multiply(neg, n, out=neg)  # (fancy indexing), so negated in place: -(fit * n + later)
        np.add(neg, later[None, :], out=neg)
        np.negative(neg, out=neg)
        neg[~(pg.compat[block] & placed[None, :])] = 1  # below every key (-key), never kept (fit > 0)
        top = min(PARTNERS, neg.shape[1])
        best = np.argpartition(neg, top - 1, axis=1)[:, :top]
        keys = np.take_along_axis(neg, best, axis=1)
        order = np.argsort(keys, axis=1)  # unique keys: most fit first, then the lower row
        best, keys = np.take_along_axis(best, order, axis=1), np.take_along_axis(keys, order, axis=1)
        out.extend(row[k <= -n].tolist() for row, k in zip(best, keys, strict=True))  # fit > 0
    return out


class _Walk:
    """The annealing state: ``GroupState`` plus Python copies of what each proposal reads, and each
    group's common languages (``glang``), so most language checks are one AND: a group without one
    member speaks at least what the whole group speaks."""

    def __init__(self, pg: PeerGroups, groups: Sequence[Sequence[int]]) -> None:
        self.pg = pg
        self.state = GroupState(pg, groups)
        self.home = [int(h) for h in self.state.home]
        self.size = [int(s) for s in self.state.size]
        self.lang = [int(x) for x in pg.lang]
        self.dept = [int(d) for d in pg.dept]
        self.glang = [self.lang_without(k, -1) for k in range(len(self.state.members))]

    def lang_without(self, k: int, gone: int) -> int:
        bits = -1
        for m in self.state.members[k]:
            if m != gone:
                bits &= self.lang[m]
        return bits

    def move_gain(self, r: int, a: int, k: int) -> int | None:
        """Fit gained by moving r from group a to group k, or None if a rule forbids it."""
        pg, st = self.pg, self.state
        if self.size[k] >= pg.size_max or self.size[a] <= pg.size_min:
            return None
        if st.compat_with.item(k, r) != self.size[k] or not self.glang[k] & self.lang[r]:
            return None
        if pg.dept_limit is not None and st.depts.item(k, self.dept[r]) >= pg.dept_limit:
            return None
        return int(st.fit_with.item(k, r) - st.fit_with.item(a, r))

    @staticmethod
    def _departments_full(limit: int | None, depts: np.ndarray, dept_r: int, dept_s: int, a: int, k: int) -> bool:
        """Swapping r (group a, department dept_r) and s (group k, dept_s) would put one department
        above the bound."""
        if limit is None or dept_r == dept_s:
            return False
        return bool(depts.item(k, dept_r) >= limit or depts.item(a, dept_s) >= limit)

    def best_swap(self, r: int, a: int, q: int, k: int) -> tuple[int, int] | None:
        """The member s of group k (not q, not locked) whose swap with r gains most, with the gain (the
        first such member in the group's order). A member whose gain cannot beat the best so far is not
        checked against the rules: the answer is the same, for a fraction of the work."""
        pg, st = self.pg, self.state
        fw, cw, compat, fit = st.fit_with, st.compat_with, pg.compat, pg.fit
        limit, depts, dept, lang = pg.dept_limit, st.depts, self.dept, self.lang
        room_k, room_a = self.size[k] - 1, self.size[a] - 1
        cw_kr = cw.item(k, r)
        if cw_kr < room_k:  # r clashes with two members of k or more: no swap of one member can fix that
            return None
        pull = fw.item(k, r) - fw.item(a, r)
        lang_r, dept_r = lang[r], dept[r]
        kr_lang = self.glang[k] & lang_r
        lang_a: int | None = None  # group a without r: computed only when the whole group's is not enough
        best: tuple[int, int] | None = None
        for s in st.members[k]:
            if s == q or s in pg.frozen:
                continue
            c = int(compat.item(r, s))
            if cw_kr - c != room_k or cw.item(a, s) - c != room_a:
                continue
            gain = int(pull + fw.item(a, s) - fw.item(k, s) - 2 * int(fit.item(r, s)))
            if best is not None and gain <= best[1]:
                continue
            dept_s = dept[s]
            if self._departments_full(limit, depts, dept_r, dept_s, a, k):
                continue
            if not kr_lang and not self.lang_without(k, s) & lang_r:
                continue
            if not self.glang[a] & lang[s]:
                if lang_a is None:
                    lang_a = self.lang_without(a, r)
                if not lang_a & lang[s]:
                    continue
            best = (s, gain)
        return best

    def apply_move(self, r: int, k: int) -> None:
        a = self.home[r]
        self.state.move(r, k)
        self.home[r] = k
        self.size[a] -= 1
        self.size[k] += 1
        self.glang[a], self.glang[k] = self.lang_without(a, -1), self.lang_without(k, -1)

    def apply_swap(self, r: int, s: int) -> None:
        a, k = self.home[r], self.home[s]
        self.state.swap(r, s)
        self.home[r], self.home[s] = k, a
        self.glang[a], self.glang[k] = self.lang_without(a, -1), self.lang_without(k, -1)

    def groups(self, home: Sequence[int] | None = None) -> list[list[int]]:
        if home is None:
            return [sorted(ms) for ms in self.state.members if ms]
        by: dict[int, list[int]] = {}
        for r, k in enumerate(home):
            if k >= 0:
                by.setdefault(k, []).append(r)
        return [sorted(by[k]) for k in sorted(by)]


def anneal_peer_groups(
    pg: PeerGroups,
    groups: Sequence[Sequence[int]],
    seed: int,
    proposals: int,
    deadline: float | None = None,
) -> tuple[list[list[int]], bool]:
    """The best grouping of the same peers the walk finds (never worse than ``groups``), and whether
    the clock cut it short (after a complete block). Pools of more than ``BATCHED_GROUPS`` groups: the
    proposals come in batches (``BATCH_PER_GROUP`` per group), judged at once (``peer_batch.judge``)
    against the groups as they stood at the batch's start; each one accepted is made in order, judged
    again one at a time if a group it reads changed earlier in the batch. A proposal turned down was
    judged against groups at most a batch old. Smaller pools: ``_anneal_one_at_a_time``."""
    walk = _Walk(pg, groups)
    rows = [r for r, k in enumerate(walk.home) if k >= 0 and r not in pg.frozen]
    if not rows or proposals <= 0:
        return walk.groups(), False
    if len([g for g in groups if g]) <= BATCHED_GROUPS:
        return _anneal_one_at_a_time(walk, rows, seed, proposals, deadline)
    return _anneal_in_batches(walk, rows, seed, proposals, deadline)


def _anneal_in_batches(
    walk: _Walk, rows: list[int], seed: int, proposals: int, deadline: float | None
) -> tuple[list[list[int]], bool]:
    """``anneal_peer_groups`` for pools of more than ``BATCHED_GROUPS`` groups (see its docstring)."""
    pg = walk.pg
    table, counts = _partner_table(_partners(pg, rows, walk.state.home >= 0))  # of rows[i], at i
    row_of = np.asarray(rows, dtype=np.int64)
    frozen = np.zeros(len(pg.compat), dtype=bool)
    frozen[list(pg.frozen)] = True
    glang = np.array([_bits(x) for x in walk.glang], dtype=np.uint64)
    rng = np.random.default_rng(seed)
    batch = min(BATCH_MOST, max(BATCH_LEAST, BATCH_PER_GROUP * len(walk.state.members)))
    home, n_rows = walk.home, len(rows)
    current = best = 0
    best_home = list(home)
    slope = math.log(T_END / T_START) / proposals
    done, cut = 0, False
    every = BLOCK * max(1, -(-proposals // (BLOCK * CLOCK_READINGS)))  # the clock read at most ~CLOCK_READINGS times
    while done < proposals:
        if done and done % BLOCK == 0:
            if current > best:
                best, best_home = current, list(home)
            if done % every == 0 and deadline is not None and time.perf_counter() > deadline:
                cut = True
                break
        size = min(batch, proposals - done, BLOCK - done % BLOCK)
        draws = rng.random((3, size))
        pick = (draws[0] * n_rows).astype(np.int64)
        count = counts[pick]
        at = np.flatnonzero(count > 0)
        r = row_of[pick[at]]
        q = table[pick[at], (draws[1][at] * count[at]).astype(np.int64)]
        temps = T_START * np.exp(slope * (done + 1 + at))
        draw = draws[2][at]
        with np.errstate(divide="ignore"):  # a draw of 0 accepts anything: floor -inf
            floor = temps * np.log(draw) - FLOOR_MARGIN
        judged = judge(walk.state, glang, frozen, r, q, floor)
        take = judged.valid & ((judged.gain >= 0) | (draw < np.exp(np.minimum(judged.gain, 0) / temps)))
        changed: set[int] = set()
        for t in map(int, np.flatnonzero(take)):
            ri, qi = int(r[t]), int(q[t])
            a, k = int(judged.home[t]), int(judged.target[t])
            if a in changed or k in changed:  # judged again as the groups stand now, one at a time
                step = _judge_one(walk, ri, qi, float(draw[t]), float(temps[t]))
                if step is None:
                    continue
                a, k, other, gain = step
            else:
                other, gain = (-1 if judged.move[t] else int(judged.other[t])), int(judged.gain[t])
            if other < 0:
                walk.apply_move(ri, k)
            else:
                walk.apply_swap(ri, other)
            glang[a], glang[k] = _bits(walk.glang[a]), _bits(walk.glang[k])
            changed.update((a, k))
            current += gain
        done += size
    if current > best:
        return walk.groups(), cut
    return walk.groups(best_home), cut


def _anneal_one_at_a_time(
    walk: _Walk, rows: list[int], seed: int, proposals: int, deadline: float | None
) -> tuple[list[list[int]], bool]:
    """``anneal_peer_groups`` for pools of at most ``BATCHED_GROUPS`` groups: each proposal judged as
    the groups stand (``_Walk``), its draws from ``random.Random(seed)``, the best grouping kept at
    each block's end."""
    pg = walk.pg
    partners = _partners(pg, rows, walk.state.home >= 0)  # of rows[i], at i
    rng = random.Random(seed)
    randrange, uniform, exp = rng.randrange, rng.random, math.exp  # bound once: the loop is the hot path
    home, n_rows = walk.home, len(rows)
    current = best = 0
    best_home = list(home)
    temperature, cooling = T_START, (T_END / T_START) ** (1.0 / proposals)
    cut = False
    for i in range(proposals):
        if i % SMALL_BLOCK == 0 and i:
            if current > best:
                best, best_home = current, list(home)
            if deadline is not None and time.perf_counter() > deadline:
                cut = True
                break
        temperature *= cooling
        pick = randrange(n_rows)
        options = partners[pick]
        if not options:
            continue
        r, q = rows[pick], options[randrange(len(options))]
        a, k = home[r], home[q]
        if a == k:
            continue
        gain = walk.move_gain(r, a, k)
        swap = None
        if gain is None:
            swap = walk.best_swap(r, a, q, k)
            if swap is None:
                continue
            gain = swap[1]
        if gain < 0 and uniform() >= exp(gain / temperature):
            continue
        if swap is None:
            walk.apply_move(r, k)
        else:
            walk.apply_swap(r, swap[0])
        current += gain
    if current > best:
        return walk.groups(), cut
    return walk.groups(best_home), cut


def _judge_one(walk: _Walk, r: int, q: int, draw: float, temperature: float) -> tuple[int, int, int, int] | None:
    """Proposal (r, q) judged as the groups stand now: (r's group, q's group, the member to swap with
    or -1 for a move, the gain) if a rule allows it and the draw accepts it, else None."""
    a, k = walk.home[r], walk.home[q]
    if a == k:
        return None
    gain = walk.move_gain(r, a, k)
    other = -1
    if gain is None:
        swap = walk.best_swap(r, a, q, k)
        if swap is None:
            return None
        other, gain = swap
    if gain < 0 and draw >= math.exp(gain / temperature):
        return None
    return a, k, other, gain


def _bits(languages: int) -> np.uint64:
    """A language set of ``_Walk`` (a Python int, -1 for all) as the uint64 of ``peer_state``."""
    return np.uint64(languages & 0xFFFF_FFFF_FFFF_FFFF)


def _partner_table(partners: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's partners as one padded table, and how many each row has."""
    counts = np.array([len(p) for p in partners], dtype=np.int64)
    table = np.zeros((len(partners), max(1, int(counts.max(initial=0)))), dtype=np.int64)
    for i, p in enumerate(partners):
        table[i, : len(p)] = p
    return table, counts


RESTARTS = 8
"""Small pools (see ``restart_budget``): annealing runs restarted from the best grouping so far. One
walk stops in a local optimum the next may leave: on the benchmark's 30-peer pool, a walk of 18,000
proposals from the run's groups (fit 232) reached the proven optimum 235 for 2 seeds of 10, one of
75,000 for 5 of 10, and 8 restarts of 25,000 for 16 of 20 seeds (1.0 s of CPU)."""
RESTART_PER_PEER = 800
RESTART_PER_SECOND = 40_000
"""Restart proposals per second of the limit at most, all restarts together (small pools run 150,000-
200,000 proposals a second on this machine). On the benchmark's 30-peer pool, seeds 2020-2031, on an
idle machine (2026-11-30): with 80,000 the clock cut 9 of 12 runs short of the re-splits (one ended at
232), so the same seed could give other groups; with 40,000 none was cut and all 12 reached the proven
optimum 235, in 1.8-2.2 s of the 3 s limit (30,000: 10 of 12; 20,000: 7 of 12)."""
RESTART_GROUPS = 20
"""Pools of at most this many groups are restarted (larger ones spend the limit on one longer walk)."""


def restart_budget(peers: int, groups: int, time_limit: float) -> tuple[int, int]:
    """How many restarts a pool gets and how many proposals each: counts, so the same input gives the
    same walks. None (0, 0) above ``RESTART_GROUPS`` groups."""
    if groups > RESTART_GROUPS or peers <= 0:
        return 0, 0
    each = min(RESTART_PER_PEER * peers, int(RESTART_PER_SECOND * time_limit / RESTARTS))
    return (RESTARTS, each) if each > 0 else (0, 0)


def restarted_walks(
    pg: PeerGroups,
    groups: Sequence[Sequence[int]],
    seed: int,
    budget: tuple[int, int],
    deadline: float | None = None,
) -> tuple[list[list[int]], bool]:
    """The best grouping of ``budget[0]`` annealing walks of ``budget[1]`` proposals each, every walk
    from the best so far and followed by the descent, the k-th with the seed ``seed * 7919 + k``
    (never worse than ``groups``); and whether the clock cut it short (checked between walks and
    inside each, as in ``anneal_peer_groups``)."""
    best = [sorted(g) for g in groups]
    best_fit = pg.total(best)
    restarts, proposals = budget
    for k in range(restarts):
        if deadline is not None and time.perf_counter() > deadline:
            return best, True
        walked, cut = anneal_peer_groups(pg, best, seed * 7919 + k, proposals, deadline)
        if not cut:
            walked, cut = polish_peer_groups(pg, walked, deadline)
        if pg.total(walked) > best_fit:
            best, best_fit = walked, pg.total(walked)
        if cut:
            return best, True
    return best, False
