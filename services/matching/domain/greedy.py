"""A simple greedy baseline: people in lottery order each take the best-fitting eligible place with
room. Benchmarks compare the solver against it; it respects every hard rule (``validate`` checks)."""

from __future__ import annotations

import time

import numpy as np

from contracts.events import UnmatchedReason
from services.matching.domain.common import Prepared, loads_after, make_group, max_load_ratio, unplaced
from services.matching.domain.model import Group, MatchingResult, Stats, Unplaced
from services.matching.domain.rules import PairRules, Pool


def greedy_match(prep: Prepared) -> MatchingResult:
    """Pairs and facilitated groups (one mentor per group); other forms are solved by CP-SAT only."""
    started = time.perf_counter()
    pol = prep.policy
    if pol.mentors_per_group != 1:
        raise ValueError("the greedy baseline covers forms with one mentor per group")
    pool = Pool.encode(prep.people)
    mentors = np.array(prep.mentors, dtype=np.int64)
    mentor_ids = prep.mentor_ids
    free = np.array([prep.free(pid) for pid in mentor_ids], dtype=np.int64)
    rules = PairRules(pool, pol, mentors)
    groups_of: dict[int, list[list[str]]] = {}  # mentor position -> its groups' members
    gone: list[Unplaced] = []
    order = sorted(prep.seekers, key=lambda i: prep.ranks[prep.people[i].participant_id])
    used = np.zeros(len(mentors), dtype=np.int64)
    for i in order:
        pid = prep.people[i].participant_id
        eligible = rules.eligible(i)
        prep.drop_excluded_mentors(pid, eligible)
        fit = rules.fit(i)
        placed = False
        if pol.group_members_max == 1:  # pairs: the best-fitting eligible mentor with a free slot
            open_ = eligible & (used < free)
            if open_.any():
                k = int(np.flatnonzero(open_)[np.argmax(fit[open_])])
                groups_of.setdefault(k, []).append([pid])
                used[k] += 1
                placed = True
        else:
            candidates = np.flatnonzero(eligible)
            for k in candidates[np.lexsort((candidates, -fit[candidates]))]:
                groups = groups_of.setdefault(int(k), [])
                for members in groups:  # join an existing group of this mentor with room and no clash
                    if len(members) < pol.group_members_max and _fits(prep, pid, members, mentor_ids[int(k)]):
                        members.append(pid)
                        placed = True
                        break
                if not placed and len(groups) < free[k]:
                    groups.append([pid])
                    placed = True
                if placed:
                    break
        if not placed:
            gone.append(unplaced(pid, UnmatchedReason.OTHER, "greedy found no place"))
    result_groups: list[Group] = []
    for k, groups in sorted(groups_of.items()):
        for members in groups:
            if len(members) >= pol.group_members_min:
                result_groups.append(make_group(prep, [mentor_ids[k]], members))
            else:
                gone += [unplaced(p, UnmatchedReason.GROUP_SIZE, "greedy group too small") for p in members]
    load = loads_after(prep, result_groups)
    stats = Stats(
        method="greedy",
        status="GREEDY",
        seed=prep.seed,
        placed_count=sum(len(g.members) - 1 for g in result_groups),
        unplaced_count=len(gone),
        placed_bound=len(prep.seekers),
        total_fit=float(sum(g.fit for g in result_groups)),
        max_load_ratio=max_load_ratio(prep, load),
        load=load,
        wall_time_seconds=round(time.perf_counter() - started, 3),
    )
    return MatchingResult(
        program_id=prep.inp.program_id,
        form=prep.inp.form,
        seed=prep.seed,
        groups=sorted(result_groups, key=lambda g: g.group_id),
        unplaced=sorted(gone, key=lambda u: u.participant_id),
        lottery=prep.ranks,
        stats=stats,
    )


def _fits(prep: Prepared, pid: str, members: list[str], mentor: str) -> bool:
    """Member-member rules of a facilitated group: reporting lines, conflicts, department bound."""
    from services.matching.domain.rules import in_reporting_line

    pol = prep.policy
    p = prep.by_id[pid]
    for other in members:
        o = prep.by_id[other]
        if in_reporting_line(p, o, pol.reporting_line_depth) or other in p.conflicts_with or pid in o.conflicts_with:
            return False
        if frozenset((pid, other)) in prep.excluded:
            return False
    if pol.max_same_department is not None:
        same = sum(1 for other in [mentor, *members] if prep.by_id[other].department == p.department)
        if same + 1 > pol.max_same_department:  # the mentor counts too
            return False
    return True
