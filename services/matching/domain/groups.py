"""Group forms with CP-SAT: facilitated groups (a mentor and several mentees), peer groups (peers
only) and team mentoring (an intact team and its mentors). Levels, in order: most placed; who is
placed by lottery; lowest maximum mentor load ratio, then spread; best fit.

Interpretation of the group rules (documented in docs/matching.md):
- facilitated groups: language, time zone and seniority are mentor-member rules (the mentor runs the
  sessions); reporting lines, declared conflicts and the department bound hold for every member pair;
- peer groups: every rule holds for every pair; a group shares one language (a group language is
  chosen) and its members' time zones and levels fit in one window of the policy's width;
- teams: the mentors must be eligible for every team member; a team is placed whole or not at all.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict

import numpy as np
from ortools.sat.python import cp_model

from contracts.events import UnmatchedReason
from contracts.policy import Form
from services.matching.domain.common import (
    Prepared,
    Progress,
    loads_after,
    make_group,
    max_load_ratio,
    unplaced,
)
from services.matching.domain.levels import Levels, lottery_level
from services.matching.domain.lottery import lottery_key
from services.matching.domain.model import Group, MatchingResult, Stats, Unplaced
from services.matching.domain.rules import PairRules, Pool, describe_exclusions, first_failing_counts

RATIO_SCALE = 1000
SPREAD_SCALE = 100
TOP_MENTORS = 8
TOP_PARTNERS = 3
TOP_CO_MENTORS = 6
ALL_CO_MENTORS_UP_TO = 12
"""Pools with this few mentors consider every mentor as a co-facilitator: exact on small pools."""


def _apart_pairs(prep: Prepared, ids: list[str]) -> list[tuple[str, str]]:
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


def _result(
    prep: Prepared,
    groups: list[Group],
    gone: list[Unplaced],
    levels: Levels | None,
    started: float,
    proven_lottery: bool,
    notes: list[str],
    placed_bound: int,
) -> MatchingResult:
    load = loads_after(prep, groups)
    fit = float(sum(g.fit for g in groups))
    status = "OPTIMAL"
    fit_bound: float | None = fit
    if levels is not None:
        if not levels.all_optimal or not proven_lottery:
            status = "FEASIBLE"
        last = levels.outcomes[-1] if levels.outcomes else None
        if last is not None and last.name == "fit":
            fit_bound = max(fit, last.bound)
    gap = round((fit_bound - fit) / fit_bound, 6) if fit_bound else 0.0
    stats = Stats(
        method="cp_sat",
        status=status,
        seed=prep.seed,
        placed_count=sum(len([m for m in g.members if m.role.value != "mentor"]) for g in groups),
        unplaced_count=len(gone),
        placed_bound=placed_bound,
        total_fit=fit,
        fit_bound=fit_bound,
        gap=gap,
        max_load_ratio=max_load_ratio(prep, load),
        load=load,
        wall_time_seconds=round(time.perf_counter() - started, 3),
        overrides_applied=len(prep.excluded) + len(prep.locked),
        levels={o.name: o.value for o in (levels.outcomes if levels else [])},
        notes=[*prep.notes, *notes],
    )
    return MatchingResult(
        program_id=prep.inp.program_id,
        form=prep.inp.form,
        seed=prep.seed,
        groups=sorted(groups, key=lambda g: g.group_id),
        unplaced=sorted(gone, key=lambda u: u.participant_id),
        lottery=prep.ranks,
        stats=stats,
    )


def _load_levels(levels: Levels, prep: Prepared, opened: dict[str, list[cp_model.IntVar]], levels_left: int) -> None:
    """Level 3: minimise the maximum load ratio, then the spread (sum of load^2 / capacity).

    ``opened[m]`` are mentor m's group slots in order (slot s+1 opens only after slot s), so the spread
    is linear: each slot costs its marginal increase of load^2 / capacity.
    """
    model = levels.model
    if not opened:
        return
    top = model.new_int_var(0, RATIO_SCALE * 50, "max_load_ratio")
    spread_terms = []
    for mentor, slots in opened.items():
        cap, load = prep.capacity[mentor], prep.load[mentor]
        model.add((load + sum(slots)) * RATIO_SCALE <= top * cap)
        for s, y in enumerate(slots):
            spread_terms.append(y * ((2 * (load + s) + 1) * SPREAD_SCALE // max(1, cap)))
    levels.optimise("max_load_ratio", top, maximize=False, levels_left=levels_left)
    levels.optimise("spread", sum(spread_terms), maximize=False, levels_left=levels_left - 1)


def _co_mentor_candidates(
    prep: Prepared, candidates: dict[str, list[tuple[int, int]]], free: np.ndarray, mentor_apart: set[tuple[int, int]]
) -> dict[int, list[int]]:
    """For each lead mentor, the mentors who may co-facilitate its groups: free, not apart from the
    lead, ranked by how many of the lead's candidate mentees they could also serve (then lottery)."""
    shared: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for cands in candidates.values():
        ks = [k for k, _ in cands]
        for a in ks:
            for b in ks:
                if a != b:
                    shared[a][b] += 1
    everyone = len(prep.mentors) <= ALL_CO_MENTORS_UP_TO
    out: dict[int, list[int]] = {}
    for lead in range(len(prep.mentors)):
        pool = range(len(prep.mentors)) if everyone else shared[lead].keys()
        options = [j for j in pool if j != lead and free[j] > 0 and (min(lead, j), max(lead, j)) not in mentor_apart]
        options.sort(key=lambda j: (-shared[lead].get(j, 0), prep.ranks[prep.mentor_ids[j]]))
        out[lead] = options if everyone else options[:TOP_CO_MENTORS]
    return out


def _facilitated(prep: Prepared, progress: Progress, time_limit: float) -> MatchingResult:
    """Groups anchored on a lead mentor's slots; with ``mentors_per_group`` above 1, co-facilitators
    join a slot. Every mentor of a group must be eligible for every member (mentor-member rules)."""
    started = time.perf_counter()
    pol = prep.policy
    co_count = pol.mentors_per_group - 1
    pool = Pool.encode(prep.people)
    mentors = np.array(prep.mentors, dtype=np.int64)
    mentor_ids = prep.mentor_ids
    free = np.array([prep.free(pid) for pid in mentor_ids], dtype=np.int64)
    rules = PairRules(pool, pol, mentors)
    seekers = [prep.people[i].participant_id for i in prep.seekers]
    candidates: dict[str, list[tuple[int, int]]] = {}
    eligible_of: dict[str, np.ndarray] = {}
    fit_of: dict[str, np.ndarray] = {}
    reasons: dict[str, Unplaced] = {}
    for row, i in enumerate(prep.seekers):
        pid = seekers[row]
        failing = rules.failing(i)
        eligible = np.ones(len(mentors), dtype=bool)
        for mask in failing.values():
            eligible &= ~mask
        prep.drop_excluded_mentors(pid, eligible)
        with_room = eligible & (free > 0)
        fit = rules.fit(i)
        pos = np.flatnonzero(with_room)
        if not eligible.any():
            text = f"no eligible mentor: {describe_exclusions(first_failing_counts(failing), pol)}"
            reasons[pid] = unplaced(pid, UnmatchedReason.NO_ELIGIBLE_PARTNER, text)
        elif len(pos) == 0:
            text = f"capacity exhausted: all {int(eligible.sum())} eligible mentors are full"
            reasons[pid] = unplaced(pid, UnmatchedReason.CAPACITY_EXHAUSTED, text)
        elif int(eligible.sum()) < pol.mentors_per_group:
            text = f"only {int(eligible.sum())} eligible mentors; the policy wants {pol.mentors_per_group} per group"
            reasons[pid] = unplaced(pid, UnmatchedReason.NO_ELIGIBLE_PARTNER, text)
            pos = pos[:0]
        ranks = np.array([prep.ranks[mentor_ids[k]] for k in pos], dtype=np.int64)
        order = np.lexsort((ranks, -fit[pos]))
        candidates[pid] = [(int(pos[o]), int(fit[pos[o]])) for o in order[:TOP_MENTORS]]
        eligible_of[pid] = eligible
        fit_of[pid] = fit

    mentor_apart = {
        (min(mentor_ids.index(a), mentor_ids.index(b)), max(mentor_ids.index(a), mentor_ids.index(b)))
        for a, b in _apart_pairs(prep, mentor_ids)
    }
    co_options = _co_mentor_candidates(prep, candidates, free, mentor_apart) if co_count else {}

    model = cp_model.CpModel()
    demand: dict[int, int] = defaultdict(int)
    for cands in candidates.values():
        for k, _ in cands:
            demand[k] += 1
    slots: dict[int, list[cp_model.IntVar]] = {}
    for k, n in sorted(demand.items()):
        count = min(int(free[k]), n // pol.group_members_min)
        if co_count and len(co_options.get(k, [])) < co_count:
            count = 0
        if count > 0:
            slots[k] = [model.new_bool_var(f"open_{k}_{s}") for s in range(count)]
            for s in range(count - 1):
                model.add(slots[k][s] >= slots[k][s + 1])  # symmetry: slots open in order
    # co-facilitators: c[(k, s, j)] = mentor j co-facilitates lead k's slot s
    co: dict[tuple[int, int], list[tuple[int, cp_model.IntVar]]] = {}
    for k, ys in slots.items():
        for s, y in enumerate(ys):
            if co_count:
                helpers = [(j, model.new_bool_var(f"co_{k}_{s}_{j}")) for j in co_options[k]]
                model.add(sum(v for _, v in helpers) == co_count * y)
                co[(k, s)] = helpers
                for (j1, v1), (j2, v2) in itertools.combinations(helpers, 2):
                    if (min(j1, j2), max(j1, j2)) in mentor_apart:
                        model.add_bool_or([~v1, ~v2])
    x: dict[tuple[str, int, int], cp_model.IntVar] = {}
    placed: dict[str, cp_model.IntVar] = {}
    members_of: dict[tuple[int, int], list[tuple[str, cp_model.IntVar]]] = defaultdict(list)
    fit_terms = []
    for pid in seekers:
        mine = []
        for k, f in candidates[pid]:
            for s, y in enumerate(slots.get(k, [])):
                var = model.new_bool_var(f"x_{pid}_{k}_{s}")
                model.add_implication(var, y)
                x[(pid, k, s)] = var
                members_of[(k, s)].append((pid, var))
                mine.append(var)
                if f:
                    fit_terms.append(var * f)
        placed[pid] = model.new_bool_var(f"placed_{pid}")
        model.add(sum(mine) == placed[pid])
    for (k, s), members in members_of.items():
        y = slots[k][s]
        model.add(sum(v for _, v in members) >= pol.group_members_min * y)
        model.add(sum(v for _, v in members) <= pol.group_members_max * y)
        for j, c in co.get((k, s), []):
            for pid, v in members:
                if not eligible_of[pid][j]:
                    model.add_bool_or([~v, ~c])  # a co-facilitator must be eligible for every member
                elif fit_of[pid][j] > 0:
                    both = model.new_bool_var(f"cofit_{pid}_{k}_{s}_{j}")
                    model.add_implication(both, v)
                    model.add_implication(both, c)
                    fit_terms.append(both * int(fit_of[pid][j]))
        if pol.max_same_department is not None:
            mentor_dept = prep.by_id[mentor_ids[k]].department
            by_dept: dict[str, list[cp_model.IntVar]] = defaultdict(list)
            for pid, v in members:
                by_dept[prep.by_id[pid].department].append(v)
            for j, c in co.get((k, s), []):
                by_dept[prep.by_id[mentor_ids[j]].department].append(c)
            for dept, vs in by_dept.items():
                room = pol.max_same_department - (1 if dept == mentor_dept else 0)
                model.add(sum(vs) <= max(0, room))
    for a, b in _apart_pairs(prep, seekers):
        for k, _ in candidates[a]:
            for s in range(len(slots.get(k, []))):
                if (b, k, s) in x:
                    model.add_bool_or([~x[(a, k, s)], ~x[(b, k, s)]])
    for a, b in prep.locked:
        if (a in placed) != (b in placed):  # mentor + mentee: the mentee must sit in one of that mentor's slots
            mentee, mentor = (a, b) if a in placed else (b, a)
            k = mentor_ids.index(mentor) if mentor in mentor_ids else -1
            options = [x[(mentee, k, s)] for s in range(len(slots.get(k, []))) if (mentee, k, s) in x]
            if options:
                model.add(sum(options) == 1)
            else:
                prep.notes.append(f"lock {mentor}/{mentee} not applied: not an eligible pair with room")

    # each mentor's groups, led or co-facilitated, within free capacity; ordered slots for the spread level
    taken: dict[int, list[cp_model.IntVar]] = defaultdict(list)
    for k, ys in slots.items():
        taken[k] += ys
    for helpers in co.values():
        for j, c in helpers:
            taken[j].append(c)
    opened: dict[str, list[cp_model.IntVar]] = {}
    for k, vs in sorted(taken.items()):
        if not co_count:
            opened[mentor_ids[k]] = vs  # lead slots are already ordered
            continue
        model.add(sum(vs) <= int(free[k]))
        count = min(len(vs), int(free[k]))
        ys = [model.new_bool_var(f"load_{k}_{s}") for s in range(count)]
        for s in range(count - 1):
            model.add(ys[s] >= ys[s + 1])
        model.add(sum(ys) == sum(vs))
        opened[mentor_ids[k]] = ys

    levels = Levels(model, prep.seed, time_limit, progress)
    total = levels.optimise("placed", sum(placed.values()), maximize=True, levels_left=5)
    by_lottery = sorted(placed, key=lambda p: prep.ranks[p])
    _, proven = lottery_level(levels, placed, by_lottery, int(total.value), levels_left=4)
    _load_levels(levels, prep, opened, levels_left=3)
    levels.optimise("fit", sum(fit_terms), maximize=True, levels_left=1)

    solver = levels.solver
    groups: list[Group] = []
    for (k, slot), members in sorted(members_of.items()):
        chosen = [pid for pid, v in members if solver.value(v)]
        if chosen:
            co_ids = [mentor_ids[j] for j, c in co.get((k, slot), []) if solver.value(c)]
            groups.append(make_group(prep, [mentor_ids[k], *co_ids], chosen))
    placed_ids = {pid for pid, v in placed.items() if solver.value(v)}
    gone = []
    for pid in seekers:
        if pid in placed_ids:
            continue
        gone.append(reasons.get(pid) or _lost_or_size(prep, pid, placed_ids, len(candidates[pid])))
    bound = math.floor(total.bound) if total.status != "OPTIMAL" else int(total.value)
    notes = [f"co-facilitators drawn from each lead's {TOP_CO_MENTORS} best-overlapping mentors"] if co_count else []
    if co_count and len(prep.mentors) <= ALL_CO_MENTORS_UP_TO:
        notes = []
    return _result(prep, groups, gone, levels, started, proven, notes, bound)


def _lost_or_size(prep: Prepared, pid: str, placed_ids: set[str], options: int) -> Unplaced:
    if options == 0:
        return unplaced(pid, UnmatchedReason.NO_ELIGIBLE_PARTNER, "no eligible group")
    ahead = sum(1 for p in placed_ids if prep.ranks[p] < prep.ranks[pid])
    return unplaced(
        pid,
        UnmatchedReason.LOST_LOTTERY,
        f"lost the lottery: the places in its {options} eligible mentors' groups went to people drawn ahead "
        f"({ahead} placed people had a better lottery rank; "
        f"this one ranked {prep.ranks[pid] + 1} of {len(prep.ranks)})",
    )


def _peer_groups(prep: Prepared, progress: Progress, time_limit: float) -> MatchingResult:
    started = time.perf_counter()
    pol = prep.policy
    pool = Pool.encode(prep.people)
    peers = [prep.people[i].participant_id for i in prep.seekers]
    n = len(peers)
    n_groups = n // pol.group_members_min
    model = cp_model.CpModel()
    x = {(pid, g): model.new_bool_var(f"x_{pid}_{g}") for pid in peers for g in range(n_groups)}
    y = [model.new_bool_var(f"open_{g}") for g in range(n_groups)]
    placed = {pid: model.new_bool_var(f"placed_{pid}") for pid in peers}
    for g in range(n_groups - 1):
        model.add(y[g] >= y[g + 1])
    for pid in peers:
        model.add(sum(x[(pid, g)] for g in range(n_groups)) == placed[pid])
    languages = sorted({lang for pid in peers for lang in prep.by_id[pid].languages})
    for g in range(n_groups):
        members = [x[(pid, g)] for pid in peers]
        model.add(sum(members) >= pol.group_members_min * y[g])
        model.add(sum(members) <= pol.group_members_max * y[g])
        for pid in peers:
            model.add_implication(x[(pid, g)], y[g])
        if pol.require_shared_language:
            speaks = {lang: model.new_bool_var(f"lang_{g}_{lang}") for lang in languages}
            model.add(sum(speaks.values()) <= 1)
            for pid in peers:
                mine = [speaks[lang] for lang in prep.by_id[pid].languages]
                model.add(sum(mine) >= 1).only_enforce_if(x[(pid, g)])
        for attr, width in (("tz", pol.max_timezone_distance_hours), ("level", pol.max_peer_level_spread)):
            if width is None or (attr == "level" and pol.seniority_rule.value != "peers_within"):
                continue
            values = {
                pid: (prep.by_id[pid].utc_offset_minutes if attr == "tz" else prep.by_id[pid].level) for pid in peers
            }
            span = int(width * 60) if attr == "tz" else int(width)
            low = model.new_int_var(min(values.values()) - span, max(values.values()), f"{attr}_low_{g}")
            for pid, v in values.items():
                model.add(low <= v).only_enforce_if(x[(pid, g)])
                model.add(low + span >= v).only_enforce_if(x[(pid, g)])
        if pol.max_same_department is not None:
            by_dept: dict[str, list[cp_model.IntVar]] = defaultdict(list)
            for pid in peers:
                by_dept[prep.by_id[pid].department].append(x[(pid, g)])
            for vs in by_dept.values():
                model.add(sum(vs) <= pol.max_same_department)
    for a, b in _apart_pairs(prep, peers):
        for g in range(n_groups):
            model.add_bool_or([~x[(a, g)], ~x[(b, g)]])
    for a, b in prep.locked:
        if a in placed and b in placed:
            for g in range(n_groups):
                model.add(x[(a, g)] == x[(b, g)])
    # fit between peers: pair variables for each peer's best few partners
    rules = PairRules(pool, pol, np.array(prep.seekers, dtype=np.int64))
    fit_terms = []
    pair_set: dict[tuple[str, str], int] = {}
    for row, i in enumerate(prep.seekers):
        fit = rules.fit(i)
        fit[row] = -1
        for j in np.argsort(-fit, kind="stable")[:TOP_PARTNERS]:
            if fit[j] > 0:
                a, b = sorted((peers[row], peers[int(j)]))
                pair_set[(a, b)] = int(fit[j])
    for (a, b), f in sorted(pair_set.items()):
        for g in range(n_groups):
            both = model.new_bool_var(f"pair_{a}_{b}_{g}")
            model.add_implication(both, x[(a, g)])
            model.add_implication(both, x[(b, g)])
            fit_terms.append(both * f)
    levels = Levels(model, prep.seed, time_limit, progress)
    total = levels.optimise("placed", sum(placed.values()), maximize=True, levels_left=3)
    order = sorted(peers, key=lambda p: prep.ranks[p])
    _, proven = lottery_level(levels, placed, order, int(total.value), levels_left=2)
    levels.optimise("fit", sum(fit_terms) if fit_terms else 0, maximize=True, levels_left=1)
    solver = levels.solver
    groups = []
    for g in range(n_groups):
        chosen = [pid for pid in peers if solver.value(x[(pid, g)])]
        if chosen:
            groups.append(make_group(prep, [], chosen))
    placed_ids = {pid for pid in peers if solver.value(placed[pid])}
    gone = []
    for pid in peers:
        if pid not in placed_ids:
            gone.append(
                unplaced(
                    pid,
                    UnmatchedReason.GROUP_SIZE,
                    f"no group of {pol.group_members_min}-{pol.group_members_max} compatible peers had room "
                    f"(lottery rank {prep.ranks[pid] + 1} of {len(prep.ranks)})",
                )
            )
    notes = ["peer-group fit counts each peer's best partners only"] if pair_set else []
    bound = math.floor(total.bound) if total.status != "OPTIMAL" else int(total.value)
    return _result(prep, groups, gone, levels, started, proven, notes, bound)


def _teams(prep: Prepared, progress: Progress, time_limit: float) -> MatchingResult:
    started = time.perf_counter()
    pol = prep.policy
    pool = Pool.encode(prep.people)
    mentors = np.array(prep.mentors, dtype=np.int64)
    mentor_ids = prep.mentor_ids
    rules = PairRules(pool, pol, mentors)
    teams: dict[str, list[int]] = defaultdict(list)
    gone: list[Unplaced] = []
    for i in prep.seekers:
        p = prep.people[i]
        if p.team_id is None:
            gone.append(unplaced(p.participant_id, UnmatchedReason.OTHER, "team mentoring needs a team_id"))
        else:
            teams[p.team_id].append(i)
    model = cp_model.CpModel()
    placed: dict[str, cp_model.IntVar] = {}
    z: dict[tuple[str, int], cp_model.IntVar] = {}
    fit_terms = []
    sizes: dict[str, int] = {}
    for team, rows in sorted(teams.items()):
        ids = [prep.people[i].participant_id for i in rows]
        if not pol.group_members_min <= len(rows) <= pol.group_members_max:
            bounds = f"{pol.group_members_min}-{pol.group_members_max}"
            for pid in ids:
                gone.append(
                    unplaced(pid, UnmatchedReason.GROUP_SIZE, f"team {team} has {len(rows)} members, not {bounds}")
                )
            continue
        eligible = np.ones(len(mentors), dtype=bool)
        fit = np.zeros(len(mentors), dtype=np.int64)
        counts: dict[str, int] = defaultdict(int)
        for i in rows:
            failing = rules.failing(i)
            for rule, n in first_failing_counts(failing).items():
                counts[rule] = max(counts[rule], n)
            for mask in failing.values():
                eligible &= ~mask
            fit += rules.fit(i)
        sizes[team] = len(rows)
        placed[team] = model.new_bool_var(f"placed_{team}")
        options = []
        for k in np.flatnonzero(eligible):
            var = model.new_bool_var(f"z_{team}_{k}")
            z[(team, int(k))] = var
            options.append(var)
            fit_terms.append(var * int(fit[k]))
        model.add(sum(options) == pol.mentors_per_group * placed[team])
        if len(options) < pol.mentors_per_group:
            text = f"no {pol.mentors_per_group} mentors eligible for every member: {describe_exclusions(counts, pol)}"
            for pid in ids:
                gone.append(unplaced(pid, UnmatchedReason.NO_ELIGIBLE_PARTNER, text))
    opened: dict[str, list[cp_model.IntVar]] = {}
    for pos, mentor in enumerate(mentor_ids):
        mine = [v for (_team, kk), v in z.items() if kk == pos]
        if mine:
            model.add(sum(mine) <= prep.free(mentor))
            # slots in order for the spread level: slot s is open when at least s+1 teams are taken
            count = min(len(mine), prep.free(mentor))
            ys = [model.new_bool_var(f"slot_{pos}_{s}") for s in range(count)]
            for s in range(count - 1):
                model.add(ys[s] >= ys[s + 1])
            model.add(sum(ys) == sum(mine))
            opened[mentor] = ys
    for a, b in _apart_pairs(prep, mentor_ids):
        ka, kb = mentor_ids.index(a), mentor_ids.index(b)
        for team in placed:
            if (team, ka) in z and (team, kb) in z:
                model.add_bool_or([~z[(team, ka)], ~z[(team, kb)]])
    levels = Levels(model, prep.seed, time_limit, progress)
    total = levels.optimise("placed", sum(placed[t] * sizes[t] for t in placed), maximize=True, levels_left=5)
    order = sorted(placed, key=lambda t: lottery_key(prep.seed, f"team:{t}"))
    quota = sum(1 for t in placed if levels.solver.value(placed[t]))
    _, proven = lottery_level(levels, placed, order, quota, levels_left=4)
    _load_levels(levels, prep, opened, levels_left=3)
    levels.optimise("fit", sum(fit_terms) if fit_terms else 0, maximize=True, levels_left=1)
    solver = levels.solver
    groups = []
    done = {u.participant_id for u in gone}
    for team, var in sorted(placed.items()):
        ids = [prep.people[i].participant_id for i in teams[team]]
        if solver.value(var):
            chosen = [mentor_ids[k] for (t, k), v in z.items() if t == team and solver.value(v)]
            groups.append(make_group(prep, chosen, ids))
        else:
            for pid in ids:
                if pid not in done:
                    text = f"lost the lottery: the eligible mentors' capacity went to teams drawn ahead (team {team})"
                    gone.append(unplaced(pid, UnmatchedReason.LOST_LOTTERY, text))
    bound = math.floor(total.bound) if total.status != "OPTIMAL" else int(total.value)
    return _result(prep, groups, gone, levels, started, proven, [], bound)


def solve_groups(prep: Prepared, progress: Progress, time_limit: float) -> MatchingResult:
    pol = prep.policy
    if prep.inp.form is Form.TEAM:
        return _teams(prep, progress, time_limit)
    if pol.mentors_per_group == 0:
        return _peer_groups(prep, progress, time_limit)
    return _facilitated(prep, progress, time_limit)
