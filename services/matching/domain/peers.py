"""Peer groups: numbered groups of peers, a chosen group language, time-zone and level windows.

Every rule holds for every pair of a group; the exact (dense) model lets any peer join any group,
numbered by their first member; the pruned model lets each peer join its greedy group or its best
partners'.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt
from ortools.sat.python import cp_model

from contracts.events import UnmatchedReason
from contracts.policy import MatchingPolicy, SeniorityRule
from services.matching.domain.common import (
    Prepared,
    Progress,
    apart_pairs,
    make_group,
    unplaced,
)
from services.matching.domain.components import component_runs, peer_components
from services.matching.domain.group_greedy import greedy_peers
from services.matching.domain.group_result import Outcome, group_result, proven_most, quota_of, unplaced_seekers
from services.matching.domain.levels import (
    CombinedLevels,
    Levels,
    lottery_level,
    run_deadline,
)
from services.matching.domain.model import MatchingResult, Unplaced
from services.matching.domain.peer_anneal import (
    RESTART_GROUPS,
    anneal_budget,
    anneal_peer_groups,
    descend_first,
    restart_budget,
    restarted_walks,
)
from services.matching.domain.peer_counts import counted_most
from services.matching.domain.peer_fit import polish_peer_groups
from services.matching.domain.peer_lns import lns_budget, lns_peer_groups
from services.matching.domain.peer_place import follow_the_lottery, merge_groups, place_more
from services.matching.domain.peer_state import PeerGroups, language_bits
from services.matching.domain.rules import (
    BoolArray,
    IntArray,
    PairRules,
    Pool,
    describe_exclusions,
    first_failing_counts,
)

TOP_PARTNERS = 3
PEER_DENSE_LIMIT = 6_000
"""Peer groups: while peers x groups stays below this, every peer may join every group (exact)."""
PEER_PARTNERS = 6
PEER_VARS_PER_SECOND = 1_500
"""Peer groups: the largest model tried per second of the limit (peer-group variables and the pair
variables of the fit level cost more to build than the facilitated ones: about 2,000 peers' pruned
model took 4-8 s to build on this machine); above it the greedy's groups are the result."""


def _model_size(size: int, size_min: int) -> int:
    """About how many peer x group variables a component's model has (see ``build``)."""
    if size * max(1, size // size_min) <= PEER_DENSE_LIMIT:
        groups = max(1, size // size_min)
        return size * groups - groups * (groups - 1) // 2  # the r-th peer may join groups 0..r
    return size * (PEER_PARTNERS + 2)


@dataclass
class PeerModel:
    model: cp_model.CpModel
    x: dict[tuple[str, int], cp_model.IntVar]
    placed: dict[str, cp_model.IntVar]
    in_group: dict[int, list[str]]
    fit_terms: Sequence[cp_model.LinearExprT]
    hint: dict[cp_model.IntVar, int]
    dense: bool
    has_pairs: bool
    allowed: dict[str, list[int]]
    """The groups each peer may join (empty: no place to go, e.g. no greedy group near it when pruned)."""


def solve_peer_groups(
    prep: Prepared, progress: Progress, time_limit: float, greedy_only: bool = False
) -> MatchingResult:
    pol = prep.policy
    pool = Pool.encode(prep.people)
    peers = [prep.people[i].participant_id for i in prep.seekers]
    row_of = {pid: r for r, pid in enumerate(peers)}
    rules = PairRules(pool, pol, np.array(prep.seekers, dtype=np.int64))
    compat, fitm = _pair_matrices(pool, pol, np.array(prep.seekers, dtype=np.int64))
    reasons: dict[str, Unplaced] = {}
    need = pol.group_members_min - 1
    for r in map(int, np.flatnonzero(compat.sum(axis=1) < need)):
        failing = rules.failing(prep.seekers[r])
        if pol.seniority_rule is not SeniorityRule.PEERS_WITHIN:
            failing.pop("seniority", None)
        text = (
            f"only {int(compat[r].sum())} compatible peers, a group needs {pol.group_members_min}: "
            f"{describe_exclusions(first_failing_counts(failing), pol)}"
        )
        reasons[peers[r]] = unplaced(peers[r], UnmatchedReason.NO_ELIGIBLE_PARTNER, text)
    for pair in prep.excluded:
        a, b = sorted(pair)
        if a in row_of and b in row_of:
            compat[row_of[a], row_of[b]] = compat[row_of[b], row_of[a]] = False
    active = [pid for pid in peers if pid not in reasons]
    greedy = greedy_peers(prep, peers, compat, cast(IntArray, fitm))  # it only reads fits: int32 does
    notes: list[str] = []
    lock_rows = {row_of[p] for pair in prep.locked for p in pair if p in row_of}
    departments = {d: k for k, d in enumerate(sorted({prep.by_id[p].department for p in peers}))}
    search = PeerGroups(
        compat=compat,
        fit=fitm,
        lang=language_bits([prep.by_id[p].languages if pol.require_shared_language else ["*"] for p in peers]),
        dept=np.array([departments[prep.by_id[p].department] for p in peers], dtype=np.int64),
        size_min=pol.group_members_min,
        size_max=pol.group_members_max,
        dept_limit=pol.max_same_department,
        frozen=frozenset(lock_rows),
    )

    most = counted_most(
        compat, [row_of[pid] for pid in active], search.dept, pol.group_members_min, pol.group_members_max,
        pol.max_same_department,
    )  # fmt: skip
    waiting_order = sorted((row_of[pid] for pid in active), key=lambda r: prep.ranks[peers[r]])
    rank = np.array([prep.ranks[pid] for pid in peers], dtype=np.int64)

    def polished(groups: list[list[str]], stage: str, final: bool = True) -> list[list[str]]:
        """More peers placed if the rules let them in (in lottery order, nobody taken out), then the
        same peers in better-fitting groups (``peer_fit``, ``peer_anneal``; and, on the groups the run
        returns, ``searched_further``: not on the greedy's groups that only serve as the solver's hint,
        whose levels then get the time)."""
        rows = [[row_of[pid] for pid in members] for members in groups]
        placed_rows = {r for members in rows for r in members}
        left_out = [r for r in waiting_order if r not in placed_rows]
        rows = place_more(search, rows, left_out)
        rows = follow_the_lottery(search, rows, left_out, rank)
        rows = merge_groups(search, rows)
        deadline = run_deadline(prep.started, time_limit)
        placed = sum(len(members) for members in rows)
        better, cut = rows, False
        if descend_first(placed, len(rows)):  # large pools: the walk's hot start does it for less
            better, cut = polish_peer_groups(search, rows, deadline)
        if not cut:
            budget = anneal_budget(placed, len(better), time_limit)
            better, cut = anneal_peer_groups(search, better, prep.seed, budget, deadline)
            if not cut:
                better, cut = polish_peer_groups(search, better, deadline)
        if not cut and final:
            better, cut = searched_further(better, deadline)
        if cut:
            notes.append(f"the time limit cut the fit search on the {stage} groups short (after a complete step)")
        return [[peers[r] for r in members] for members in better]

    def searched_further(rows: list[list[int]], deadline: float) -> tuple[list[list[int]], bool]:
        """Small pools: annealing restarted from the best grouping, then exact re-splits of two or three
        groups (``peer_lns``); large pools return as they are (see both modules for why). Up to three
        groups, the re-split of all of them is the exact optimum for the placed set: no restarts."""
        placed = sum(len(members) for members in rows)
        budget = restart_budget(placed, len(rows), time_limit) if len(rows) > 3 else (0, 0)
        better, cut = restarted_walks(search, rows, prep.seed, budget, deadline)
        if not cut:
            better, cut = lns_peer_groups(search, better, lns_budget(time_limit), deadline)
        return better, cut

    def re_split(groups: list[list[str]]) -> list[list[str]]:
        """The greedy's polished groups, returned as the result: the last step of ``polished`` too."""
        rows = [[row_of[pid] for pid in members] for members in groups]
        better, cut = searched_further(rows, run_deadline(prep.started, time_limit))
        if cut:
            notes.append("the time limit cut the fit search on the greedy groups short (after a complete step)")
        return [[peers[r] for r in members] for members in better]

    def finish(chosen_groups: list[list[str]], levels: Levels | CombinedLevels | None, **kw: object) -> MatchingResult:
        prep.stage_done("the solver's peer groups", (([], members) for members in chosen_groups), most)
        groups = [make_group(prep, [], members) for members in chosen_groups]
        placed_ids = {pid for members in chosen_groups for pid in members}

        def compatible_with(pid: str) -> Callable[[str], bool]:
            r = row_of[pid]
            return lambda p: bool(compat[r, row_of[p]])

        def no_group(pid: str) -> str:
            """Its compatible peers (enough for a group) are placed after it in the lottery, in groups it may
            not join or take a place in; a group of them with it would break theirs."""
            mates = np.flatnonzero(compat[row_of[pid]])
            placed_mates = sum(1 for r in mates if peers[int(r)] in placed_ids)
            return (
                f"no group of {pol.group_members_min}-{pol.group_members_max} mutually compatible peers with a "
                f"common language could include it without leaving someone placed out ({len(mates)} compatible "
                f"peers, {placed_mates} of them placed in groups it may not join)"
            )

        gone = unplaced_seekers(
            prep, peers, placed_ids, reasons, compatible_with, "placed peers compatible with this one", no_group
        )
        return group_result(prep, Outcome(groups, gone, levels, notes=notes, **kw))  # type: ignore[arg-type]

    if greedy_only:
        return finish(greedy, None, placed_bound=most, fallback=True, baseline=True)
    prep.stage_done("the greedy peer groups", (([], members) for members in greedy), most)
    greedy = polished(greedy, "greedy", final=False)
    prep.stage_done("the greedy peer groups, fit improved", (([], members) for members in greedy), most)
    lock_pairs: list[tuple[str, str]] = []
    for a, b in prep.locked:
        if a in row_of and b in row_of:
            lock_pairs.append((a, b))
            prep.locks_applied += 1
        else:
            prep.notes.append(f"lock {a}/{b} not applied: both must be peers in the pool")

    def build(part: list[str]) -> PeerModel:
        """The CP-SAT model of one component: its own numbered groups, the same rules."""
        size = len(part)
        in_part = set(part)
        part_greedy = [members for members in greedy if members[0] in in_part]
        dense = size * max(1, size // pol.group_members_min) <= PEER_DENSE_LIMIT
        allowed: dict[str, list[int]] = {}
        if dense:
            n_groups = max(len(part_greedy), size // pol.group_members_min)
            # groups are interchangeable: number them by their first member (in ``part`` order), so the
            # r-th peer may only join groups 0..r (without it, 15 peers took 9 s to prove their fit)
            index = {pid: r for r, pid in enumerate(part)}
            part_greedy = sorted(part_greedy, key=lambda members: min(index[m] for m in members))
            allowed = {pid: list(range(min(n_groups, index[pid] + 1))) if pid not in reasons else [] for pid in part}
        else:  # each peer may join its greedy group or the greedy groups of its best compatible partners
            n_groups = len(part_greedy)
            local = {pid: g for g, members in enumerate(part_greedy) for pid in members}
            for pid in part:
                r = row_of[pid]
                partners = np.flatnonzero(compat[r])
                partners = partners[np.argsort(-fitm[r, partners], kind="stable")]
                groups_ok = {local[pid]} if pid in local else set()
                for q in partners:
                    if len(groups_ok) > PEER_PARTNERS:
                        break
                    if peers[int(q)] in local:
                        groups_ok.add(local[peers[int(q)]])
                allowed[pid] = sorted(groups_ok) if pid not in reasons else []
        model = cp_model.CpModel()
        x = {(pid, g): model.new_bool_var(f"x_{pid}_{g}") for pid in part for g in allowed[pid]}
        in_group: dict[int, list[str]] = defaultdict(list)
        for pid, g in x:
            in_group[g].append(pid)
        y = [model.new_bool_var(f"open_{g}") for g in range(n_groups)]
        placed = {pid: model.new_bool_var(f"placed_{pid}") for pid in part}
        if dense:
            for g in range(n_groups - 1):
                model.add(y[g] >= y[g + 1])
        for pid in part:
            model.add(sum(x[(pid, g)] for g in allowed[pid]) == placed[pid])
        for g in range(n_groups):
            ids = in_group[g]
            member_vars = [x[(pid, g)] for pid in ids]
            model.add(sum(member_vars) >= pol.group_members_min * y[g])
            model.add(sum(member_vars) <= pol.group_members_max * y[g])
            for pid in ids:
                model.add_implication(x[(pid, g)], y[g])
            if not ids:
                continue
            if pol.require_shared_language:
                languages = sorted({lang for pid in ids for lang in prep.by_id[pid].languages})
                speaks = {lang: model.new_bool_var(f"lang_{g}_{lang}") for lang in languages}
                model.add(sum(speaks.values()) <= 1)
                for pid in ids:
                    spoken = [speaks[lang] for lang in prep.by_id[pid].languages]
                    model.add(sum(spoken) >= 1).only_enforce_if(x[(pid, g)])
            for attr, width in (("tz", pol.max_timezone_distance_hours), ("level", pol.max_peer_level_spread)):
                if width is None or (attr == "level" and pol.seniority_rule is not SeniorityRule.PEERS_WITHIN):
                    continue
                values = {
                    pid: (prep.by_id[pid].utc_offset_minutes if attr == "tz" else prep.by_id[pid].level) for pid in ids
                }
                span = int(width * 60) if attr == "tz" else int(width)
                low = model.new_int_var(min(values.values()) - span, max(values.values()), f"{attr}_low_{g}")
                for pid, v in values.items():
                    model.add(low <= v).only_enforce_if(x[(pid, g)])
                    model.add(low + span >= v).only_enforce_if(x[(pid, g)])
            if pol.max_same_department is not None:
                by_dept: dict[str, list[cp_model.IntVar]] = defaultdict(list)
                for pid in ids:
                    by_dept[prep.by_id[pid].department].append(x[(pid, g)])
                for vs in by_dept.values():
                    if len(vs) > pol.max_same_department:
                        model.add(sum(vs) <= pol.max_same_department)
        for a, b in apart_pairs(prep, part):
            for g in set(allowed[a]) & set(allowed[b]):
                model.add_bool_or([~x[(a, g)], ~x[(b, g)]])
        for a, b in lock_pairs:
            if a not in in_part:
                continue  # another component's lock (both ends are always in one component)
            for g in set(allowed[a]) | set(allowed[b]):  # together in one group, or neither placed
                va, vb = x.get((a, g)), x.get((b, g))
                if va is not None and vb is not None:
                    model.add(va == vb)
                else:
                    only = va if va is not None else vb
                    if only is not None:
                        model.add(only == 0)
            model.add(placed[a] == placed[b])
        # fit between peers: pair variables for each peer's best few compatible partners (same component)
        fit_terms = []
        pair_vars: dict[tuple[str, str, int], cp_model.IntVar] = {}
        pair_set = _fit_pairs(part, row_of, peers, compat, fitm, TOP_PARTNERS) if fit_level else {}
        for (a, b), f in sorted(pair_set.items()):
            for g in sorted(set(allowed.get(a, [])) & set(allowed.get(b, []))):
                both = model.new_bool_var(f"pair_{a}_{b}_{g}")
                model.add_implication(both, x[(a, g)])
                model.add_implication(both, x[(b, g)])
                # both == x_a AND x_b exactly: any solution (e.g. the previous level's) carries its true fit
                model.add_bool_or([~x[(a, g)], ~x[(b, g)], both])
                fit_terms.append(both * f)
                pair_vars[(a, b, g)] = both
        hint: dict[cp_model.IntVar, int] = {v: 0 for v in x.values()}
        home_of = {pid: g for g, g_members in enumerate(part_greedy) for pid in g_members}
        for (a, b, g), both in pair_vars.items():
            hint[both] = int(home_of.get(a) == g and home_of.get(b) == g)
        hint.update({v: 0 for v in placed.values()})
        hint.update({v: 0 for v in y})
        for g, g_members in enumerate(part_greedy):
            hint[y[g]] = 1
            for pid in g_members:
                if (pid, g) in x:
                    hint[x[(pid, g)]] = 1
                    hint[placed[pid]] = 1
        return PeerModel(model, x, placed, in_group, fit_terms, hint, dense, bool(pair_set), allowed)

    parts = peer_components(peers, active, compat, lock_pairs, row_of)
    size = sum(_model_size(len(part), pol.group_members_min) for part in parts)
    too_large = size > max(PEER_DENSE_LIMIT, time_limit * PEER_VARS_PER_SECOND)
    if too_large or time.perf_counter() > run_deadline(prep.started, time_limit):
        why = (
            f"the CP-SAT model (about {size:,} peer-group variables) is too large to build and solve within the "
            f"{time_limit:g} s limit (at most {PEER_VARS_PER_SECOND:,} per second of it, or {PEER_DENSE_LIMIT:,}): "
            "greedy groups in lottery order"
            if too_large
            else "the clock ran out while preparing the model: greedy groups in lottery order"
        )
        prep.locks_applied = 0  # the greedy applies none; the result's notes say so
        return finish(re_split(greedy), None, placed_bound=most, fallback=True, why_greedy=why + _SEARCHED)
    everyone = sum(len(members) for members in greedy) >= len(active)
    pruned = any(len(part) * max(1, len(part) // pol.group_members_min) > PEER_DENSE_LIMIT for part in parts)
    if everyone and pruned and not lock_pairs:
        return finish(re_split(greedy), None, placed_bound=most, fallback=True, why_greedy=_EVERYONE)
    fit_level = not searched_exhaustively(len(greedy))
    built = [build(part) for part in parts]
    if not fit_level:
        notes.append(_NO_FIT_LEVEL)
    if any(pm.has_pairs for pm in built):
        notes.append(
            "peer-group fit is optimised on each peer's best partners only, so no bound on the reported fit "
            "(every pair of a group) is proven: fit_bound and gap are left empty"
        )
    if not all(pm.dense for pm in built):
        notes.append(f"each peer may join its greedy group or its {PEER_PARTNERS} best partners' (pruned model)")
    runs = component_runs(prep, progress, time_limit, [len(part) for part in parts], [pm.model for pm in built])
    for levels, pm in zip(runs, built, strict=True):
        levels.hint(pm.hint)
        levels.adopt_hint()
    # level 1 in every component before any other level (see solve_facilitated)
    firsts = [
        levels.optimise("placed", sum(pm.placed.values()), maximize=True)
        for levels, pm in zip(runs, built, strict=True)
    ]
    quotas = [quota_of(levels, total, pm.placed) for levels, pm, total in zip(runs, built, firsts, strict=True)]
    solved = [(levels, pm, total, q) for levels, pm, total, q in zip(runs, built, firsts, quotas, strict=True)]
    solved = [entry for entry in solved if entry[3] is not None]
    if runs and not solved:
        return finish(re_split(greedy), None, placed_bound=most, fallback=True, why_greedy=_NOTHING + _SEARCHED)
    proven = True
    for levels, pm, _, quota in solved:
        order = sorted((p for p in pm.placed if pm.allowed[p]), key=lambda p: prep.ranks[p])  # with a place to go
        _, part_proven = lottery_level(levels, pm.placed, order, int(quota or 0))
        proven = proven and part_proven
    if fit_level:
        for levels, pm, _, _ in solved:
            levels.optimise("fit", sum(pm.fit_terms) if pm.fit_terms else 0, maximize=True, at_most=FIT_LEVEL_AT_MOST)
    chosen_groups = []
    bound = 0
    for levels, pm, total, _ in solved:
        for g in sorted(pm.in_group):
            chosen = [pid for pid in pm.in_group[g] if levels.value(pm.x[(pid, g)])]
            if chosen:
                chosen_groups.append(chosen)
        part_active = sum(1 for pid in pm.placed if pid not in reasons)
        if pm.dense:
            part_active = min(part_active, proven_most(total, part_active))
        bound += part_active
    unsolved = {pid for pm, q in zip(built, quotas, strict=True) if q is None for pid in pm.placed}
    if unsolved:
        chosen_groups += [members for members in greedy if members[0] in unsolved]
        bound += sum(1 for pid in unsolved if pid not in reasons)
        notes.append(
            f"{len(runs) - len(solved)} of {len(runs)} components got no solution before the clock stopped the "
            "solver: their groups are the greedy's (lottery order, every rule)"
        )
        proven = False
    kept = [levels for levels, _, _, _ in solved]
    combined: Levels | CombinedLevels = kept[0] if len(kept) == 1 else CombinedLevels(kept)
    if len(runs) > 1:
        notes.append(f"solved as {len(runs)} models over independent components of the compatibility graph (exact)")
    exact = all(pm.dense for pm in built) and fit_level  # without the fit level, fit is not proven
    chosen_groups = polished(chosen_groups, "solver's")
    return finish(
        chosen_groups,
        combined,
        placed_bound=min(bound, most),
        proven_lottery=proven,
        exact=exact,
        fit_is_model_objective=False,
    )


_EVERYONE = (
    "every peer with enough compatible peers is placed (placed = its bound, so the lottery leaves nobody "
    "out): the pruned CP-SAT model, whose fit level sees each peer's best partners only, is not built; these are "
    "the greedy's groups completed and searched for fit (moves and swaps of peers between groups)"
)
_NO_FIT_LEVEL = (
    "CP-SAT solves placed and the lottery only: fit (every pair of a group) is searched by annealing restarts "
    "and exact re-splits of every two and three groups, which reach further than its fit level on each peer's "
    "best partners did in the same time; fit is not proven optimal"
)
_NOTHING = "the solver found no solution within its budget: these are the greedy's groups (lottery order)"
_SEARCHED = ", then moves and swaps of peers between groups for fit (the same people placed)"


FIT_LEVEL_AT_MOST = 0.05
"""Deterministic seconds of CP-SAT's fit level at most (pools of up to three groups; larger ones skip the
level): its objective counts each peer's best partners only, and the search after it (moves, swaps,
annealing, exact re-splits) makes the reported fit. With its share of the limit (3.6 s at the default
30 s) the level proved its objective in 2-3 s of a 15-peer pool's 2.6-3.2 s, where the issue asks for
under 1 s; capped at 0.03 the same 16 pools of 15 peers (loose rules, groups of 2-6; the default policy;
groups of 3-5) ended with the same fit, each in 0.07-0.48 s of CPU (2026-11-30, an outside-in probe's
pools)."""

PAIR_BLOCK = 512
"""Peers whose rules and fits are computed in one vector pass (``_pair_matrices``)."""


def _pair_matrices(pool: Pool, pol: MatchingPolicy, seekers: IntArray) -> tuple[BoolArray, npt.NDArray[np.int32]]:
    """Which peers may share a group (every pairwise rule, nobody with themselves) and their fits, in
    blocks of rows (``PairRules.eligible_rows``, ``fit_rows``): one call per peer took 3 s at 10,000
    peers. Mentor/mentee seniority has no meaning between peers: only ``peers_within`` applies. Fits
    as int32: half the memory of int64 (400 MB at 10,000 peers)."""
    if pol.seniority_rule is not SeniorityRule.PEERS_WITHIN:
        pol = pol.model_copy(update={"seniority_rule": SeniorityRule.NONE})
    rules, n = PairRules(pool, pol, seekers), len(seekers)
    compat = np.zeros((n, n), dtype=bool)
    fitm = np.zeros((n, n), dtype=np.int32)
    for start in range(0, n, PAIR_BLOCK):
        rows = np.arange(start, min(n, start + PAIR_BLOCK))
        compat[rows] = rules.eligible_rows(seekers[rows])
        fitm[rows] = rules.fit_rows(seekers[rows], np.int32)
    np.fill_diagonal(compat, False)
    np.fill_diagonal(fitm, 0)
    return compat, fitm


def _fit_pairs(
    part: list[str],
    row_of: dict[str, int],
    peers: list[str],
    compat: BoolArray,
    fitm: npt.NDArray[np.integer],
    top: int,
) -> dict[tuple[str, str], int]:
    """The pairs the fit level counts: each peer's ``top`` best-fitting compatible partners (positive fit)."""
    pairs: dict[tuple[str, str], int] = {}
    for pid in part:
        r = row_of[pid]
        options = np.flatnonzero(compat[r] & (fitm[r] > 0))
        for j in options[np.argsort(-fitm[r, options], kind="stable")][:top]:
            a, b = sorted((pid, peers[int(j)]))
            pairs[(a, b)] = int(fitm[r, int(j)])
    return pairs


def searched_exhaustively(groups: int) -> bool:
    """Pools of 4 to ``RESTART_GROUPS`` groups get annealing restarts and exact re-splits of every two
    and three groups (``searched_further``): there CP-SAT's fit level, which sees each peer's
    ``TOP_PARTNERS`` best partners only and proves nothing about the reported fit, is not solved. On
    the benchmark's 30 peers it took 1.0 s of the 3 s limit's CPU (0.7 s of wall time) and without it
    the search still reached the proven optimum 235 for 12 of 12 seeds (2020-2031), as with it; on
    20-60 peers (seeds 2026-2028) the same fit in each. Up to 3 groups it stays: it is cheap there,
    and proves its optimum (the re-split of all groups is then exact too)."""
    return 3 < groups <= RESTART_GROUPS


def greedy_peer_groups(prep: Prepared) -> MatchingResult:
    """The peer-group greedy alone (lottery order, every rule), as the benchmarks' baseline."""
    return solve_peer_groups(prep, lambda _m, _f: None, 0.0, greedy_only=True)
