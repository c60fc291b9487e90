"""Peer groups, placing: more peers placed (``place_more``) and fewer, larger groups where fit gains
(``merge_groups``), before the descent (``peer_fit``). Neither takes anyone out of the placed set, and
every group keeps every rule (``peer_state``); deterministic (fixed orders). Locked peers stay.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from services.matching.domain.peer_state import GroupState, PeerGroups

MOVE_ONE_GROUPS = 50
"""Placing a peer by moving a member elsewhere: the groups it fits best are tried, this many."""


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
        if not (_join(state, u, langs) or _join_by_moving_one(state, u, langs)):
            _open_with(state, u, waiting)
    return [sorted(ms) for ms in state.members if ms]


def follow_the_lottery(
    pg: PeerGroups, groups: Sequence[Sequence[int]], waiting: Sequence[int], rank: npt.NDArray[np.int64]
) -> list[list[int]]:
    """Nobody left out who could take the place of a member drawn after them: each peer of ``waiting``
    (left out, in lottery order) takes, in a group it may join without that member (every rule), the
    place of the member drawn last among those drawn after it; the member displaced is placed again if
    it can be (``place_more``'s steps), else waits. Rounds until one swaps nobody: each swap puts an
    earlier-drawn peer in the place of a later one, so the placed count never drops and the rounds end.
    The greedy (and the placing steps after it) fill groups in lottery order but also let a later peer
    complete a group an earlier one could have joined had it come first: on a tight 500-peer pool four
    peers were left out whom a later-drawn member's place would take. Locked peers stay."""
    state = GroupState(pg, groups)
    queue = sorted((r for r in waiting if state.home[r] < 0 and r not in pg.frozen), key=lambda r: int(rank[r]))
    swapped = True
    while swapped:
        swapped = False
        for u in list(queue):
            if state.home[u] >= 0:
                continue
            v = _latest_replaceable(state, u, rank)
            if v is None:
                continue
            k = int(state.home[v])
            state.remove(v, k)
            state.add(u, k)
            langs = state.langs()
            if not (_join(state, v, langs) or _join_by_moving_one(state, v, langs)):
                _open_with(state, v, [r for r in queue if state.home[r] < 0])
            queue = sorted({*queue, v} - {u}, key=lambda r: int(rank[r]))
            swapped = True
            break  # from the earliest-drawn again: the groups changed
    return [sorted(ms) for ms in state.members if ms]


def _latest_replaceable(state: GroupState, u: int, rank: npt.NDArray[np.int64]) -> int | None:
    """The member drawn last, after ``u``, whose place ``u`` may take (compatible with the others, a
    language in common with them, the department bound without that member); None if there is none.
    The pair rules and the department bound are checked for every member of every group at once, the
    language (a group's languages without one member) only for the members that pass them."""
    pg = state.pg
    groups = np.flatnonzero((state.size > 0) & (state.compat_with[:, u] >= state.size - 1))
    if not len(groups):
        return None
    members = state.slots[groups]  # (groups, size_max), -1 where empty
    real = members >= 0
    safe = np.where(real, members, 0)
    ok = real & (rank[safe] > rank[u])
    ok &= (state.compat_with[groups, u][:, None] - pg.compat[u, safe]) == (state.size[groups] - 1)[:, None]
    if pg.dept_limit is not None:
        same = (pg.dept[safe] == pg.dept[u]).astype(np.int64)
        ok &= (state.depts[groups, pg.dept[u]][:, None] - same) < pg.dept_limit
    rows, cols = np.nonzero(ok)
    for i in np.argsort(-rank[safe[rows, cols]], kind="stable"):
        v, k = int(safe[rows[i], cols[i]]), int(groups[rows[i]])
        if v not in pg.frozen and (state.group_lang(k, without=v) & pg.lang[u]) != 0:
            return v
    return None


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


def _join(state: GroupState, u: int, langs: npt.NDArray[np.uint64]) -> bool:
    """Unplaced peer u joins the best-fitting group it may join as it is."""
    ok = state.fits_in(u, langs)
    if not ok.any():
        return False
    pos = np.flatnonzero(ok)
    state.add(u, int(pos[np.argmax(state.fit_with[pos, u])]))
    return True


def _join_by_moving_one(state: GroupState, u: int, langs: npt.NDArray[np.uint64]) -> bool:
    """Unplaced peer u takes the place of a member v of a group, v moving to another group it may
    join (u may join that group without v: compatible with the others, language, departments)."""
    pg = state.pg
    near = np.flatnonzero(state.compat_with[:, u] >= state.size - 1)
    for k in near[np.argsort(-state.fit_with[near, u], kind="stable")][:MOVE_ONE_GROUPS]:
        k = int(k)
        for v in sorted(state.members[k]):
            if v in pg.frozen or int(state.compat_with[k, u]) - int(pg.compat[u, v]) != state.size[k] - 1:
                continue
            if (state.group_lang(k, without=v) & pg.lang[u]) == 0:
                continue
            same = int(pg.dept[v] == pg.dept[u])
            if pg.dept_limit is not None and state.depts[k, pg.dept[u]] - same >= pg.dept_limit:
                continue
            elsewhere = state.fits_in(v, langs, without=v)
            if not elsewhere.any():
                continue
            pos = np.flatnonzero(elsewhere)
            state.move(v, int(pos[np.argmax(state.fit_with[pos, v])]))
            state.add(u, k)
            return True
    return False


def _open_with(state: GroupState, u: int, waiting: Sequence[int]) -> bool:
    """A new group around unplaced peer u: other unplaced peers first (in ``waiting`` order), then
    members of groups above the minimum, each compatible with everyone chosen."""
    pg = state.pg
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
        if r != u and state.home[r] < 0 and r not in pg.frozen and fits(r):
            take(r)
    donors: dict[int, int] = {}
    if len(chosen) < pg.size_min:
        for r in map(int, np.flatnonzero(pg.compat[u] & (state.home >= 0))):
            k = int(state.home[r])
            if r in pg.frozen or state.size[k] - donors.get(k, 0) <= pg.size_min or not fits(r):
                continue
            take(r)
            donors[k] = donors.get(k, 0) + 1
            if len(chosen) >= pg.size_min:
                break
    if len(chosen) < pg.size_min:
        return False
    for r in chosen:
        if state.home[r] >= 0:
            state.remove(r, int(state.home[r]))
    state.open_group(chosen)
    return True
