"""Fast greedy solutions for the group forms, in lottery order, respecting every hard rule.

They seed CP-SAT (as hints) and are the fallback when the solver finds nothing within its budget, so
a group form always returns a rule-respecting result. Pure functions of already-computed eligibility.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping

import numpy as np
import numpy.typing as npt

from services.matching.domain.common import Prepared, apart_pairs
from services.matching.domain.rules import BoolArray, IntArray

MentorGroup = tuple[list[int], list[str]]
"""(mentor positions, lead first; member ids)."""


def _dept_ok(prep: Prepared, ids: list[str]) -> bool:
    limit = prep.policy.max_same_department
    if limit is None:
        return True
    return max(Counter(prep.by_id[p].department for p in ids).values(), default=0) <= limit


def _first_option(
    pos: IntArray, ratio: npt.NDArray[np.float64] | None, fit: IntArray, tiebreak: IntArray
) -> int | None:
    """The first of ``pos`` by (ratio, -fit, tiebreak): the lexsort's first element without sorting.
    ``ratio`` None: every one of ``pos`` has the same ratio (the caller knows it without reading them)."""
    if not len(pos):
        return None
    low = pos if ratio is None else pos[ratio == ratio.min()]
    f = fit[low]
    best = low[f == f.max()]
    return int(best[np.argmin(tiebreak[best])])


def _options(
    first: int | None, pos: IntArray, ratio: npt.NDArray[np.float64], fit: IntArray, tiebreak: IntArray
) -> Iterator[int]:
    """``pos`` by (ratio, -fit, tiebreak): the first without sorting, the rest sorted if asked for."""
    if first is None:
        return
    yield first
    for k in map(int, pos[np.lexsort((tiebreak[pos], -fit[pos], ratio))]):
        if k != first:
            yield k


def greedy_facilitated(
    prep: Prepared,
    eligible_of: Mapping[str, BoolArray],
    fit_of: Mapping[str, IntArray],
    free: IntArray,
    fill_first: bool = True,
    by_department: bool = False,
) -> list[MentorGroup]:
    """Each person in lottery order joins an open group they are compatible with (every mentor eligible
    for them, nobody apart, department bound): groups still below the minimum first, then the best fit.
    Otherwise they open a group with the eligible mentor with room whose load ratio stays lowest (load
    comes before fit in the objectives), best fit among equals, plus co-facilitators. Groups that stay
    below the minimum dissolve and their members try the remaining groups once more.

    A person joins an open group only if it fits them at least as well as the group they would open;
    ``fill_first`` makes a group still below its minimum take them anyway (more placed, less fit); the
    caller may run both and keep the better by the objectives' order.

    ``by_department`` (for pools where the department bound and the group minimum bind together, e.g.
    one department at 80 %): a person opens a group with a mentor of another department when one is
    eligible (the mentor's own department takes a place of the bound), and joins, among the groups
    below the minimum, the one closest to it (the people of small departments are what groups need to
    reach the minimum: spread over many groups, most of them dissolve)."""
    pol = prep.policy
    mids = prep.mentor_ids
    used = np.zeros(len(mids), dtype=np.int64)
    cap = np.array([max(1, prep.capacity[m]) for m in mids], dtype=np.float64)
    base = np.array([prep.load[m] for m in mids], dtype=np.float64)
    groups: list[MentorGroup] = []
    order = sorted(eligible_of, key=lambda p: prep.ranks[p])
    tiebreak = np.array([prep.ranks[m] for m in mids], dtype=np.int64)
    apart_of: dict[str, set[str]] = defaultdict(set)
    for a, b in apart_pairs(prep, [*mids, *order]):
        apart_of[a].add(b)
        apart_of[b].add(a)
    limit = pol.max_same_department
    # per group, as arrays (room for every group that can open), so each person scans the open groups at
    # numpy speed; ``live`` lists the groups with room (in opening order) and ``live_lead`` their leads:
    # a full group is never a candidate, and most groups of a large pool fill up
    most = int(free.sum()) + 1
    # per department, its people in each group (only with a department bound): checked for every open
    # group at once; group by group in Python, a pool with one department at 80 % took 27 of its 33 s
    # here at 20,000 mentees (an outside-in probe), far past its 60 s limit with the rest
    in_dept: dict[str, npt.NDArray[np.int32]] = defaultdict(lambda: np.zeros(most, dtype=np.int32))
    lead = np.zeros(most, dtype=np.int64)
    size = np.zeros(most, dtype=np.int64)
    live = np.zeros(0, dtype=np.int64)
    live_lead = np.zeros(0, dtype=np.int64)
    co_fit_needed = pol.mentors_per_group > 1
    mentor_dept = np.array([prep.by_id[m].department for m in mids], dtype=object)
    # per mentor: room for another group, and the load ratio it would have with one more
    has_room = used < free
    next_ratio = (base + used + 1) / cap
    # every mentor with room has the same next load ratio ``common``: no mentee's options need reading
    # for it (on the benchmark pools every mentor starts empty with the same capacity); kept exact as
    # groups open (a mentor leaving the room keeps it, one with room and another ratio ends it)
    with_room = next_ratio[has_room]
    common = float(with_room[0]) if len(with_room) else 0.0
    uniform = bool((with_room == common).all())

    def join(pid: str, allowed: BoolArray | None = None, at_least: int | None = None) -> bool:
        """The open group with room this person may join: below the minimum first, then best fit, then
        the earliest opened (the order the previous version scanned in), checking the rules in that order."""
        nonlocal live, live_lead
        elig, fit = eligible_of[pid], fit_of[pid]
        if not len(groups):
            return False
        dept = prep.by_id[pid].department
        ok = elig[live_lead]
        if allowed is not None:
            ok &= allowed[live]
        if limit is not None:
            ok &= in_dept[dept][live] < limit
        candidates = live[ok]
        if not len(candidates):
            return False
        below = (size[candidates] < pol.group_members_min).astype(np.int64)
        if by_department:  # below the minimum: the one closest to it first
            below *= 1 + size[candidates]
        if co_fit_needed:
            gain = np.array([sum(int(fit[k]) for k in groups[g][0]) for g in candidates], dtype=np.int64)
        else:
            gain = fit[lead[candidates]].astype(np.int64)
        if at_least is not None:  # a group still below its minimum, or one fitting as well as a new group would
            keep = ((below > 0) | (gain >= at_least)) if fill_first else (gain >= at_least)
            candidates, below, gain = candidates[keep], below[keep], gain[keep]
        mine = apart_of.get(pid, set())
        for g in candidates[np.lexsort((candidates, -gain, -below))]:
            ms, members = groups[int(g)]
            if co_fit_needed and not all(elig[k] for k in ms):
                continue
            if mine and any(o in mine for o in members):
                continue
            members.append(pid)
            if limit is not None:
                in_dept[dept][g] += 1
            size[g] += 1
            if size[g] >= pol.group_members_max:
                keep = live != g
                live, live_lead = live[keep], live_lead[keep]
            return True
        return False

    def open_group(chosen: list[int], members: list[str]) -> None:
        """A new group of ``chosen`` (lead first) with ``members``; the mentors' room and ratios follow."""
        nonlocal live, live_lead, uniform
        used[chosen] += 1
        has_room[chosen] = used[chosen] < free[chosen]
        next_ratio[chosen] = (base[chosen] + used[chosen] + 1) / cap[chosen]
        uniform = uniform and all(not has_room[k] or next_ratio[k] == common for k in chosen)
        g = len(groups)
        groups.append((chosen, list(members)))
        if limit is not None:
            for d in [*(prep.by_id[mids[k]].department for k in chosen), *(prep.by_id[p].department for p in members)]:
                in_dept[d][g] += 1
        lead[g], size[g] = chosen[0], len(members)
        if size[g] < pol.group_members_max:
            live, live_lead = np.append(live, g), np.append(live_lead, chosen[0])

    def mentors_for(members: list[str], first: list[int]) -> list[int] | None:
        """``first`` (a locked mentor, or the best option) and co-facilitators eligible for every member,
        with room, not apart, within the department bound; None when too few."""
        ok = has_room.copy()
        for pid in members:
            ok &= eligible_of[pid]
        pos = np.flatnonzero(ok)
        fit = np.zeros(len(mids), dtype=np.int64)
        for pid in members:
            fit += fit_of[pid]
        chosen = [k for k in first if ok[k]]
        if len(chosen) < len(first):
            return None
        for k in map(int, pos[np.lexsort((tiebreak[pos], -fit[pos], next_ratio[pos]))]):
            if len(chosen) == pol.mentors_per_group:
                break
            if k in chosen or any(prep.apart(mids[k], mids[j]) for j in chosen):
                continue
            if _dept_ok(prep, [mids[j] for j in [*chosen, k]] + members):
                chosen.append(k)
        whole = len(chosen) == pol.mentors_per_group and _dept_ok(prep, [mids[j] for j in chosen] + members)
        return chosen if whole else None

    # an admin's locks first (earliest drawn first): a mentee with its locked mentor, two locked mentees
    # together, in a group of their own that the lottery then fills (the solver, the chains and the fit
    # reassignment keep locked people where they are, so a lock placed here holds to the end)
    mpos = {m: k for k, m in enumerate(mids)}
    by_lock: set[str] = set()
    for a, b in sorted(prep.locked, key=lambda pair: min(prep.ranks[pair[0]], prep.ranks[pair[1]])):
        members = [p for p in (a, b) if p in eligible_of]
        locked_mentors = [mpos[p] for p in (a, b) if p in mpos]
        if by_lock & set(members) or len(members) + len(locked_mentors) != 2 or len(members) > pol.group_members_max:
            continue
        if len(members) == 2 and prep.apart(a, b):
            continue
        lock_group = mentors_for(members, locked_mentors)
        if lock_group is not None:
            open_group(lock_group, members)
            by_lock.update(members)

    for pid in order:
        if pid in by_lock:
            continue
        elig, fit = eligible_of[pid], fit_of[pid]
        pos = np.flatnonzero(elig & has_room)
        if by_department:  # a mentor of another department leaves the bound's whole room to this one's
            other = pos[mentor_dept[pos] != prep.by_id[pid].department]
            pos = other if len(other) else pos
        # lowest load ratio after one more group, then best fit, then the mentors' lottery order
        ratio = None if uniform else next_ratio[pos]
        # the first option by three linear scans; the full order only when the first is not enough
        # (co-facilitators, or a department clash): sorting every person's options cost
        # 20,000 x 3,600 at 20,000 mentees
        first = _first_option(pos, ratio, fit, tiebreak)
        # join an open group unless a new one would fit this person better (a group below its minimum
        # always takes them: placing comes first); without a mentor to open one, any group will do
        if join(pid, at_least=int(fit[first]) if first is not None else None):
            continue
        chosen: list[int] = []
        for k in _options(first, pos, next_ratio[pos] if ratio is None else ratio, fit, tiebreak):
            if any(prep.apart(mids[k], mids[j]) for j in chosen):
                continue
            if not _dept_ok(prep, [mids[j] for j in [*chosen, k]] + [pid]):
                continue
            chosen.append(k)
            if len(chosen) == pol.mentors_per_group:
                break
        if len(chosen) < pol.mentors_per_group:
            join(pid)
            continue
        open_group(chosen, [pid])
    small = [g for g in range(len(groups)) if len(groups[g][1]) < pol.group_members_min]
    keep = [g for g in range(len(groups)) if g not in set(small)]
    leftovers = sorted((p for g in small for p in groups[g][1]), key=lambda p: prep.ranks[p])
    kept = np.zeros(len(groups), dtype=bool)
    kept[keep] = True
    for pid in leftovers:
        join(pid, kept)
    return [groups[g] for g in keep]


def greedy_peers(prep: Prepared, peers: list[str], compat: BoolArray, fit: IntArray) -> list[list[str]]:
    """Peers in lottery order join the best-fitting compatible group with room and a common language,
    else open one; groups below the minimum dissolve and their members try the others once more."""
    pol = prep.policy
    row = {pid: r for r, pid in enumerate(peers)}
    langs = {pid: set(prep.by_id[pid].languages) for pid in peers}
    groups: list[list[str]] = []
    group_langs: list[set[str]] = []

    def join(pid: str, allowed: list[int]) -> bool:
        r = row[pid]
        best, best_fit = -1, -1
        for g in allowed:
            members = groups[g]
            if len(members) >= pol.group_members_max:
                continue
            if not all(compat[r, row[o]] for o in members):
                continue
            if pol.require_shared_language and not (group_langs[g] & langs[pid]):
                continue
            if not _dept_ok(prep, [*members, pid]):
                continue
            f = int(sum(fit[r, row[o]] for o in members))
            if f > best_fit:
                best, best_fit = g, f
        if best >= 0:
            groups[best].append(pid)
            group_langs[best] &= langs[pid]
            return True
        return False

    for pid in sorted(peers, key=lambda p: prep.ranks[p]):
        if not join(pid, list(range(len(groups)))):
            groups.append([pid])
            group_langs.append(set(langs[pid]))
    small = {g for g in range(len(groups)) if len(groups[g]) < pol.group_members_min}
    keep = [g for g in range(len(groups)) if g not in small]
    for pid in sorted((p for g in small for p in groups[g]), key=lambda p: prep.ranks[p]):
        join(pid, keep)
    return [groups[g] for g in keep if len(groups[g]) >= pol.group_members_min]


def greedy_teams(
    prep: Prepared, order: list[str], eligible: Mapping[str, BoolArray], fit: Mapping[str, IntArray], free: IntArray
) -> dict[str, list[int]]:
    """Teams in ``order`` (the caller's: larger teams first, the lottery among equals) take the eligible
    mentors with room that may work together, lowest load ratio first (load comes before fit in the
    objectives), best fit among equals."""
    mids = prep.mentor_ids
    used = np.zeros(len(mids), dtype=np.int64)
    cap = np.array([max(1, prep.capacity[m]) for m in mids], dtype=np.float64)
    base = np.array([prep.load[m] for m in mids], dtype=np.float64)
    tiebreak = np.array([prep.ranks[m] for m in mids], dtype=np.int64)
    out: dict[str, list[int]] = {}
    for team in order:
        pos = np.flatnonzero(eligible[team] & (used < free))
        ratio = (base[pos] + used[pos] + 1) / cap[pos]
        options = pos[np.lexsort((tiebreak[pos], -fit[team][pos], ratio))]  # walked lazily, as above
        chosen: list[int] = []
        for k in map(int, options):
            if not any(prep.apart(mids[k], mids[j]) for j in chosen):
                chosen.append(k)
            if len(chosen) == prep.policy.mentors_per_group:
                break
        if len(chosen) == prep.policy.mentors_per_group:
            used[chosen] += 1
            out[team] = chosen
    return out
