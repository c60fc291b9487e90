"""Team mentoring: an intact team and its mentors, placed whole or not at all.

The mentors must be eligible for every team member; an intact team's own reporting lines do not
keep it out, a declared conflict or an exclude override inside it does.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from contracts.events import UnmatchedReason
from services.matching.domain.common import (
    Prepared,
    Progress,
    apart_pairs,
    make_group,
    unplaced,
)
from services.matching.domain.components import component_runs, team_components
from services.matching.domain.group_greedy import greedy_teams
from services.matching.domain.group_result import Outcome, group_result, proven_most, quota_of
from services.matching.domain.levels import (
    CombinedLevels,
    LevelOutcome,
    Levels,
    lottery_level,
)
from services.matching.domain.load_levels import RATIO_SCALE, idle_under_shared_ratio, load_terms, settle_ratio
from services.matching.domain.lottery import lottery_key
from services.matching.domain.model import MatchingResult, Unplaced
from services.matching.domain.rules import (
    BoolArray,
    IntArray,
    PairRules,
    Pool,
    describe_exclusions,
    first_failing_counts,
)
from services.matching.domain.team_flow import TeamAssignment, assign_teams

FULL_TEAM_LIMIT = 20_000
"""Team x eligible mentor variables up to which every eligible mentor is an option (the model is exact).
Above it each team keeps its FULL_TEAM_LIMIT / teams (at least TOP_TEAM_MENTORS) best-fitting mentors:
2,000 teams with every eligible mentor were 676,000 variables, a minute to build before any solve."""
TOP_TEAM_MENTORS = 10


def team_options(
    eligible_of: dict[str, BoolArray],
    fit_of: dict[str, IntArray],
    greedy: dict[str, list[int]],
    lock_of: dict[str, int],
) -> tuple[dict[str, BoolArray], bool]:
    """Each team's mentor options in the model, and whether they are all its eligible mentors with room
    (exact). Pruned: its best-fitting ones (ties by position), plus the greedy's mentors and a locked one,
    so the greedy solution stays a solution of the model."""
    total = sum(int(e.sum()) for e in eligible_of.values())
    if total <= FULL_TEAM_LIMIT:
        return eligible_of, True
    top = max(TOP_TEAM_MENTORS, FULL_TEAM_LIMIT // max(1, len(eligible_of)))
    out: dict[str, BoolArray] = {}
    for team, eligible in eligible_of.items():
        pos = np.flatnonzero(eligible)
        keep = np.zeros(len(eligible), dtype=bool)
        keep[pos[np.argsort(-fit_of[team][pos], kind="stable")[:top]]] = True
        keep[greedy.get(team, [])] = True
        if team in lock_of:
            keep[lock_of[team]] = True
        out[team] = keep & eligible
    return out, False


@dataclass
class TeamModel:
    model: cp_model.CpModel
    placed: dict[str, cp_model.IntVar]
    z: dict[tuple[str, int], cp_model.IntVar]
    opened: dict[str, list[cp_model.IntVar]]
    fit_terms: Sequence[cp_model.LinearExprT]
    hint: dict[cp_model.IntVar, int]


def solve_teams(prep: Prepared, progress: Progress, time_limit: float, greedy_only: bool = False) -> MatchingResult:
    pol = prep.policy
    pool = Pool.encode(prep.people)
    mentors = np.array(prep.mentors, dtype=np.int64)
    mentor_ids = prep.mentor_ids
    mpos = {pid: k for k, pid in enumerate(mentor_ids)}
    free = np.array([prep.free(pid) for pid in mentor_ids], dtype=np.int64)
    rules = PairRules(pool, pol, mentors)
    teams: dict[str, list[int]] = defaultdict(list)
    gone: list[Unplaced] = []
    for i in prep.seekers:
        p = prep.people[i]
        if p.team_id is None:
            gone.append(unplaced(p.participant_id, UnmatchedReason.OTHER, "team mentoring needs a team_id"))
        else:
            teams[p.team_id].append(i)
    sizes: dict[str, int] = {}
    members_of: dict[str, list[str]] = {}
    team_of: dict[str, str] = {}
    eligible_of: dict[str, BoolArray] = {}
    fit_of: dict[str, IntArray] = {}
    for team, rows in sorted(teams.items()):
        ids = [prep.people[i].participant_id for i in rows]
        members_of[team] = ids
        for pid in ids:
            team_of[pid] = team
        if not pol.group_members_min <= len(rows) <= pol.group_members_max:
            bounds = f"{pol.group_members_min}-{pol.group_members_max}"
            for pid in ids:
                gone.append(
                    unplaced(pid, UnmatchedReason.GROUP_SIZE, f"team {team} has {len(rows)} members, not {bounds}")
                )
            continue
        clash = next(
            (
                (a, b)
                for a, b in itertools.combinations(sorted(ids), 2)
                if b in prep.by_id[a].conflicts_with
                or a in prep.by_id[b].conflicts_with
                or frozenset((a, b)) in prep.excluded
            ),
            None,
        )
        if clash is not None:
            text = (
                f"team {team} cannot be placed: its members {clash[0]} and {clash[1]} have a declared conflict or an "
                f"exclude override, and an intact team is never split; resolve it or take one of them out of the pool"
            )
            gone += [unplaced(pid, UnmatchedReason.OTHER, text) for pid in ids]
            continue
        block = np.array(rows, dtype=np.int64)
        eligible: BoolArray = np.asarray(rules.eligible_rows(block).all(axis=0))
        for i in rows:
            prep.drop_excluded_mentors(prep.people[i].participant_id, eligible)
        fit = rules.fit_rows(block).sum(axis=0)
        counts: dict[str, int] = defaultdict(int)
        if int(eligible.sum()) < pol.mentors_per_group:  # the reason's per-rule counts, for this team only
            for i in rows:
                for rule, n in first_failing_counts(rules.failing(i)).items():
                    counts[rule] = max(counts[rule], n)
        with_room = eligible & (free > 0)
        if int(eligible.sum()) < pol.mentors_per_group:
            text = f"no {pol.mentors_per_group} mentors eligible for every member: {describe_exclusions(counts, pol)}"
            gone += [unplaced(pid, UnmatchedReason.NO_ELIGIBLE_PARTNER, text) for pid in ids]
            continue
        if int(with_room.sum()) < pol.mentors_per_group:
            text = f"capacity exhausted: {int(eligible.sum())} mentors are eligible for every member, too few have room"
            gone += [unplaced(pid, UnmatchedReason.CAPACITY_EXHAUSTED, text) for pid in ids]
            continue
        sizes[team] = len(rows)
        eligible_of[team] = with_room
        fit_of[team] = fit
    lock_of: dict[str, int] = {}  # team -> a mentor locked to one of its members
    locks: list[tuple[str, int]] = []
    for a, b in prep.locked:
        if (a in mpos) != (b in mpos):  # a mentor and a team member: that mentor mentors the team
            mentor, member = (a, b) if a in mpos else (b, a)
            team = team_of.get(member, "")
            if team in eligible_of and eligible_of[team][mpos[mentor]]:
                locks.append((team, mpos[mentor]))
                lock_of[team] = mpos[mentor]
                prep.locks_applied += 1
                continue
        prep.notes.append(f"lock {a}/{b} not applied: teams are locked through a mentor and a team member")
    order = sorted(sizes, key=lambda t: lottery_key(prep.seed, f"team:{t}"))
    # placed counts people and every team takes as many mentors: where mentors are scarce the larger
    # teams place more, so the greedy takes them first, the lottery deciding among teams of one size. In
    # lottery order it placed 285 people of a bound of 402 (1,000 teams, 50 mentors, three per team; an
    # outside-in probe), and CP-SAT, hinted with it, found no better in the 60 s limit; by size: 402
    greedy = greedy_teams(prep, sorted(order, key=lambda t: -sizes[t]), eligible_of, fit_of, free)
    prep.stage_done(
        "the greedy teams",
        (([mentor_ids[k] for k in ks], members_of[team]) for team, ks in sorted(greedy.items())),
        sum(sizes.values()),
    )
    option_of, exact = team_options(eligible_of, fit_of, greedy, lock_of)
    mentor_apart = [(mpos[a], mpos[b]) for a, b in apart_pairs(prep, mentor_ids)]

    def build(part: list[str]) -> TeamModel:
        """The CP-SAT model of one component: its teams and their eligible mentors with room."""
        model = cp_model.CpModel()
        placed: dict[str, cp_model.IntVar] = {}
        z: dict[tuple[str, int], cp_model.IntVar] = {}
        fit_terms = []
        for team in part:
            placed[team] = model.new_bool_var(f"placed_{team}")
            options = []
            for k in map(int, np.flatnonzero(option_of[team])):
                var = model.new_bool_var(f"z_{team}_{k}")
                z[(team, k)] = var
                options.append(var)
                fit_terms.append(var * int(fit_of[team][k]))
            model.add(sum(options) == pol.mentors_per_group * placed[team])
        by_mentor: dict[int, list[cp_model.IntVar]] = defaultdict(list)
        for (_team, k), v in z.items():
            by_mentor[k].append(v)
        opened: dict[str, list[cp_model.IntVar]] = {}
        for pos in sorted(by_mentor):
            mine = by_mentor[pos]
            mentor = mentor_ids[pos]
            model.add(sum(mine) <= prep.free(mentor))
            # slots in order for the load levels: slot s is open when at least s+1 teams are taken
            count = min(len(mine), prep.free(mentor))
            ys = [model.new_bool_var(f"slot_{pos}_{s}") for s in range(count)]
            for s in range(count - 1):
                model.add(ys[s] >= ys[s + 1])
            model.add(sum(ys) == sum(mine))
            opened[mentor] = ys
        for ka, kb in mentor_apart:
            for team in part:
                if (team, ka) in z and (team, kb) in z:
                    model.add_bool_or([~z[(team, ka)], ~z[(team, kb)]])
        for team, k in locks:
            if team in placed:
                model.add(z[(team, k)] == 1)
        hint: dict[cp_model.IntVar, int] = {v: 0 for v in z.values()}
        for team, var in placed.items():
            hint[var] = int(team in greedy)
            for k in greedy.get(team, []):
                hint[z[(team, k)]] = 1
        return TeamModel(model, placed, z, opened, fit_terms, hint)

    apart_set = {(min(a, b), max(a, b)) for a, b in mentor_apart}

    def placeable_alone(team: str) -> bool:
        """Is there a set of ``mentors_per_group`` eligible mentors with room, none apart from another
        (and the locked mentor among them)? If not, the team cannot be placed even with nobody else."""
        must = [lock_of[team]] if team in lock_of else []
        pool_k = [int(k) for k in np.flatnonzero(eligible_of[team]) if int(k) not in must]

        def extend(chosen: list[int], start: int) -> bool:
            if len(chosen) >= pol.mentors_per_group:
                return True
            for n in range(start, len(pool_k)):
                k = pool_k[n]
                if all((min(k, j), max(k, j)) not in apart_set for j in chosen) and extend([*chosen, k], n + 1):
                    return True
            return False

        return extend(must, 0)

    def finish(chosen: dict[str, list[str]], levels: Levels | CombinedLevels | None, **kw: object) -> MatchingResult:
        prep.stage_done("the solver's teams", ((chosen[t], members_of[t]) for t in sorted(chosen)), sum(sizes.values()))
        groups = [make_group(prep, chosen[team], members_of[team]) for team in sorted(chosen)]
        done = {u.participant_id for u in gone}
        lost_all = list(gone)
        for team in sorted(sizes):
            if team in chosen:
                continue
            key = lottery_key(prep.seed, f"team:{team}")
            # the placed teams that took one of its eligible mentors with room
            took = [t for t in chosen if any(eligible_of[team][mpos[m]] for m in chosen[t])]
            larger = [t for t in took if sizes[t] > sizes[team]]
            later = [t for t in took if lottery_key(prep.seed, f"team:{t}") > key and sizes[t] <= sizes[team]]
            if not placeable_alone(team):
                code = UnmatchedReason.OTHER
                text = (
                    f"no {pol.mentors_per_group} of its {int(eligible_of[team].sum())} eligible mentors with room may "
                    f"work together (reporting line, declared conflict or exclude override between them; team {team})"
                )
            elif larger or later:
                # a team drawn after it, or a larger one, has its mentors: the draw did not decide it, the
                # first level (most people placed) did
                code = UnmatchedReason.CAPACITY_EXHAUSTED
                text = (
                    f"the capacity of its eligible mentors went to {len(took)} teams that together place more "
                    f"people ({len(larger)} larger teams, {len(later)} drawn after it): placing the most people "
                    f"comes before the lottery (team {team})"
                )
            elif took:
                code = UnmatchedReason.LOST_LOTTERY
                text = f"lost the lottery to {len(took)} teams drawn ahead that took its eligible mentors (team {team})"
            else:
                code = UnmatchedReason.OTHER
                text = (
                    f"not placed although {int(eligible_of[team].sum())} eligible mentors had room and no placed team "
                    f"took one: the solver stopped at its time limit before placing it (team {team})"
                )
            lost_all += [unplaced(pid, code, text) for pid in members_of[team] if pid not in done]
        return group_result(prep, Outcome(groups, lost_all, levels, **kw))  # type: ignore[arg-type]

    if greedy_only:
        spec = {team: [mentor_ids[k] for k in ks] for team, ks in greedy.items()}
        return finish(spec, None, placed_bound=sum(sizes.values()), fallback=True, baseline=True)
    parts = team_components(sorted(sizes), option_of, sizes)
    if not parts:
        parts = [[]]
    built = [build(part) for part in parts]
    runs = component_runs(
        prep, progress, time_limit, [sum(sizes[t] for t in part) for part in parts], [tm.model for tm in built]
    )
    for levels, tm in zip(runs, built, strict=True):
        levels.hint(tm.hint)
        levels.adopt_hint()
    # level 1 in every component before any other level (see solve_facilitated)
    firsts = [
        levels.optimise("placed", sum(tm.placed[t] * sizes[t] for t in tm.placed), maximize=True)
        for levels, tm in zip(runs, built, strict=True)
    ]
    quotas = [quota_of(levels, total, tm.placed, sizes) for levels, tm, total in zip(runs, built, firsts, strict=True)]
    solved = [(levels, tm, q) for levels, tm, q in zip(runs, built, quotas, strict=True) if q is not None]
    greedy_spec = {team: [mentor_ids[k] for k in ks] for team, ks in greedy.items()}
    if not solved:
        return finish(greedy_spec, None, placed_bound=sum(sizes.values()), fallback=True)
    proven = True
    for levels, tm, quota in solved:
        part_order = [t for t in order if t in tm.placed]
        # quota in people: max-people solutions may differ in their number of teams
        _, part_proven = lottery_level(levels, tm.placed, part_order, quota, weights=sizes)
        proven = proven and part_proven
    decided = [t for levels, tm, _ in solved for t, v in tm.placed.items() if levels.value(v)]
    # the flows decide levels 3-4 over every eligible mentor; not with locks, nor beside greedy components
    flowing = len(solved) == len(built) and not locks
    flows = assign_teams(prep, decided, eligible_of, fit_of, free, apart_set) if flowing else None
    if flows is not None:
        chosen = {team: [mentor_ids[k] for k in ks] for team, ks in flows.mentors.items()}
        for levels, tm, _ in solved:
            levels_from_flows(levels, prep, flows, [t for t in tm.placed if t in flows.mentors], fit_of)
    else:
        chosen = cp_sat_load_and_fit(prep, solved)
    bound = sum(proven_most(t, sum(sizes[x] for x in tm.placed)) for t, tm in zip(firsts, built, strict=True))
    notes = []
    if not exact:  # the pruned model's bound is not a bound on the full graph: count the teams instead
        bound = sum(sizes.values())
        notes.append(
            f"each team's mentors pruned to its {max(TOP_TEAM_MENTORS, FULL_TEAM_LIMIT // max(1, len(sizes)))} best "
            "fitting eligible mentors with room, plus the greedy's and a locked one; placed_bound counts every team "
            "that has enough eligible mentors with room"
        )
    unsolved = [team for tm, q in zip(built, quotas, strict=True) if q is None for team in tm.placed]
    if unsolved:
        chosen.update({team: greedy_spec[team] for team in unsolved if team in greedy_spec})
        notes.append(
            f"{len(runs) - len(solved)} of {len(runs)} components got no solution before the clock stopped the "
            "solver: their teams' mentors are the greedy's (larger teams first, the lottery among equals; every rule)"
        )
        proven = False
    kept = [levels for levels, _, _ in solved]
    combined: Levels | CombinedLevels = kept[0] if len(kept) == 1 else CombinedLevels(kept)
    if len(runs) > 1:
        notes.append(f"solved as {len(runs)} models over independent components (teams sharing no mentor; exact)")
    return finish(chosen, combined, placed_bound=bound, proven_lottery=proven, notes=notes, exact=exact)


def cp_sat_load_and_fit(prep: Prepared, solved: list[tuple[Levels, TeamModel, int]]) -> dict[str, list[str]]:
    """Levels 3 and 4 in CP-SAT (when the flows cannot decide them): the least max load ratio per
    component, one cap for all, the most mentors used, then the most fit. Each placed team's mentors."""
    mentor_ids = prep.mentor_ids
    tops: list[tuple[Levels, cp_model.IntVar, cp_model.LinearExprT, bool]] = []
    for levels, tm, _ in solved:
        load = load_terms(levels.model, prep, tm.opened)
        if load is not None:
            top, used = load
            levels.level = "max_load_ratio"
            found = levels.optimise("max_load_ratio", top, maximize=False, keep=False).found
            tops.append((levels, top, used, found))
    idle_under_shared_ratio(tops)
    chosen: dict[str, list[str]] = {}
    for levels, tm, _ in solved:
        levels.optimise("fit", sum(tm.fit_terms) if tm.fit_terms else 0, maximize=True)
        settle_ratio(levels, prep, tm.opened)
        taken: dict[str, list[str]] = defaultdict(list)
        for (t, k), v in tm.z.items():  # one pass over the assignments (not one per team)
            if levels.value(v):
                taken[t].append(mentor_ids[k])
        for team, var in tm.placed.items():
            if levels.value(var):
                chosen[team] = taken[team]
    return chosen


def levels_from_flows(
    levels: Levels, prep: Prepared, flows: TeamAssignment, teams: list[str], fit_of: dict[str, IntArray]
) -> None:
    """A component's levels 3 and 4 as the flows gave them (``team_flow``): the run's least max load
    ratio (proven), this component's mentors used and fit, proven when the relaxed flow kept the
    mentor-mentor rule (else reported with no bound, FEASIBLE)."""
    used = len({k for t in teams for k in flows.mentors[t]})
    fit = sum(int(fit_of[t][k]) for t in teams for k in flows.mentors[t])
    taken = Counter(k for ks in flows.mentors.values() for k in ks)
    mine = {k for t in teams for k in flows.mentors[t]}
    ids = prep.mentor_ids
    ratio = max(((prep.load[ids[k]] + taken[k]) / prep.capacity[ids[k]] for k in mine), default=0.0)
    levels.outcomes.append(LevelOutcome("max_load_ratio", ratio * RATIO_SCALE, ratio * RATIO_SCALE, "OPTIMAL"))
    done = "OPTIMAL" if flows.proven else "FEASIBLE"
    bound = float(used) if flows.proven else float("nan")
    levels.outcomes.append(LevelOutcome("mentors_used", float(used), bound, done))
    levels.outcomes.append(LevelOutcome("fit", float(fit), float(fit) if flows.proven else float("nan"), done))


def greedy_team_groups(prep: Prepared) -> MatchingResult:
    """The team greedy alone (larger teams first, the lottery among equals; every rule), as the benchmarks'
    baseline."""
    return solve_teams(prep, lambda _m, _f: None, 0.0, greedy_only=True)
