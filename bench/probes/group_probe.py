"""Outside-in probe of group matching (issue 13) on instances the benchmark does not use.

    python -m bench.probes.group_probe --list
    python -m bench.probes.group_probe [--only NAME] [--max-size 5000] [--runs 2] [--time-limit S]

Each case is run ``--runs`` times, each in its own process with a different ``PYTHONHASHSEED`` (so a
replay is what an auditor's second invocation would be), and one line is printed per case:

- placed / the run's ``placed_bound``; fit / the benchmark's independent fit bound (``idle_and_fit_bound``);
- wall seconds of ``match`` + ``validate`` against the policy's limit, CPU seconds, peak RSS, load average;
- ``viol``: rule violations by ``validate``, plus broken locks (``validate`` does not check locks);
- ``reasons``: unplaced people whose reason is not true of the instance (checked here, see ``reason_lies``);
- ``ins``: unplaced people who fit into a group of the result as it is (so placed was not the maximum);
- ``lot``: unplaced people who could take the place of someone drawn after them (so the lottery was not
  followed); both are certificates, checked with the rules of ``validate`` and nothing of the solver;
- ``det``: whether every run gave the same groups.

Under a pool with a department bound, a second line gives an upper bound on placed computed here
(``department_bound.lp_bound``: a linear programme over (mentor, department) counts with the group
minimum, eligibility from ``validate``'s pair rules), independent of the run's ``placed_bound``.

The fit bound is the benchmark's, given the run's max load ratio plus 1e-6: the stats round the ratio
to 6 decimals, and 0.333333 x capacity 3 floors to 0 groups there (the bound's flow is then infeasible).

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from itertools import combinations
from typing import Any

from bench.fit_bounds import idle_and_fit_bound
from bench.matching_bench import digest
from bench.matching_pools import one_department as one_department  # the pool builders live here too
from bench.synthetic_pool import instance
from contracts.events import ParticipantProfile
from contracts.policy import Form, Role, SeniorityRule
from services.matching.domain import MatchingInput, MatchingResult, match, validate
from services.matching.domain.model import Override, OverrideKind
from services.matching.domain.validate import _apart_problems, _pair_problems

Builder = Callable[[], MatchingInput]


def _limit(people: int) -> float:
    for size, limit in ((1_000, 3.0), (5_000, 10.0), (20_000, 60.0)):
        if people <= size:
            return limit
    return 120.0


def _with(inp: MatchingInput, people: list[ParticipantProfile] | None = None, **policy: Any) -> MatchingInput:
    update: dict[str, Any] = {"policy": inp.policy.model_copy(update=policy)}
    if people is not None:
        update["participants"] = people
    return inp.model_copy(update=update)


# instances -----------------------------------------------------------------------------------------


def fac(mentees: int, seed: int, conflicts: float = 0.01, **policy: Any) -> MatchingInput:
    inp = instance(mentees, Form.FACILITATED_GROUP, seed=seed, conflicts=conflicts)
    policy.setdefault("time_limit_seconds", _limit(mentees))
    return _with(inp, **policy)


def worldwide(inp: MatchingInput, seed: int) -> MatchingInput:
    """Every person in a time zone drawn from -12 h..+14 h in half hours."""
    rng = random.Random(seed)
    people = [p.model_copy(update={"utc_offset_minutes": rng.randrange(-720, 841, 30)}) for p in inp.participants]
    return inp.model_copy(update={"participants": people})


def skewed_capacity(inp: MatchingInput, seed: int) -> MatchingInput:
    """Most mentors take one group, a few take twenty."""
    rng = random.Random(seed)
    people = [
        p.model_copy(update={"capacity": 20 if rng.random() < 0.1 else 1}) if p.role is Role.MENTOR else p
        for p in inp.participants
    ]
    return inp.model_copy(update={"participants": people})


def few_mentors(inp: MatchingInput, keep: int) -> MatchingInput:
    mentors = [p for p in inp.participants if p.role is Role.MENTOR][:keep]
    rest = [p for p in inp.participants if p.role is not Role.MENTOR]
    return inp.model_copy(update={"participants": mentors + rest})


def existing_load(inp: MatchingInput, seed: int) -> MatchingInput:
    """Mentors already carry 0..capacity groups elsewhere (a third are full)."""
    rng = random.Random(seed)
    load = {p.participant_id: rng.randint(0, p.capacity or 0) for p in inp.participants if p.role is Role.MENTOR}
    return inp.model_copy(update={"existing_load": load})


def with_overrides(inp: MatchingInput, seed: int, locks: int, mentee_locks: int, excludes: int) -> MatchingInput:
    """Lock eligible mentor-mentee pairs (by validate's own pair rules, distinct mentors, a mentor's
    locks within its capacity), lock mentee-mentee pairs that a mentor could take together, and exclude
    random pairs."""
    rng = random.Random(seed)
    mentors = [p for p in inp.participants if p.role is Role.MENTOR]
    seekers = [p for p in inp.participants if p.role is not Role.MENTOR]
    out: list[Override] = []
    used: set[str] = set()
    rng.shuffle(seekers)
    for s in seekers:
        if len([o for o in out if o.kind is OverrideKind.LOCK_PAIR]) >= locks:
            break
        for m in rng.sample(mentors, min(len(mentors), 30)):
            if m.participant_id in used or _pair_problems(m, s, inp, mentor_pair=True):
                continue
            out.append(Override(kind=OverrideKind.LOCK_PAIR, participant_ids=(m.participant_id, s.participant_id),
                                reason="probe lock"))  # fmt: skip
            used |= {m.participant_id, s.participant_id}
            break
    free = [s for s in seekers if s.participant_id not in used]
    made = 0
    for a, b in zip(free[::2], free[1::2], strict=False):
        if made >= mentee_locks:
            break
        if _pair_problems(a, b, inp, mentor_pair=False):
            continue
        if not any(not _pair_problems(m, a, inp, mentor_pair=True) and not _pair_problems(m, b, inp, mentor_pair=True)
                   for m in mentors[:200]):  # fmt: skip
            continue
        out.append(Override(kind=OverrideKind.LOCK_PAIR, participant_ids=(a.participant_id, b.participant_id),
                            reason="probe lock"))  # fmt: skip
        made += 1
    ids = [p.participant_id for p in inp.participants]
    for _ in range(excludes):
        x, y = rng.sample(ids, 2)
        out.append(Override(kind=OverrideKind.EXCLUDE_PAIR, participant_ids=(x, y), reason="probe exclude"))
    return inp.model_copy(update={"overrides": out})


def nobody_placeable(mentees: int, seed: int) -> MatchingInput:
    """Every mentor is junior to every mentee (mentor_above): nobody can be placed."""
    inp = fac(mentees, seed)
    people = [p.model_copy(update={"level": 1 if p.role is Role.MENTOR else 6}) for p in inp.participants]
    return inp.model_copy(update={"participants": people})


def peer(size: int, seed: int, **policy: Any) -> MatchingInput:
    inp = instance(size * 4 // 5, Form.PEER_GROUP, seed=seed)
    people = inp.participants[:size]
    policy.setdefault("time_limit_seconds", _limit(size))
    return _with(inp, people, **policy)


LOOSE_PEER = {
    "require_shared_language": False, "max_timezone_distance_hours": None, "seniority_rule": SeniorityRule.NONE,
    "max_same_department": None, "reporting_line_depth": 0,
}  # fmt: skip
TIGHT_PEER = {"max_timezone_distance_hours": 2.0, "max_same_department": 1, "max_peer_level_spread": 0}


def team(count: int, seed: int, mentors: int, per: int = 2) -> MatchingInput:
    rng = random.Random(seed)
    inp = instance(count * 5, Form.TEAM, seed=seed)
    members = [p for p in inp.participants if p.role is not Role.MENTOR]
    chosen: list[ParticipantProfile] = [p for p in inp.participants if p.role is Role.MENTOR][:mentors]
    t = 0
    while members and t < count:
        size = rng.randint(3, 7)
        chosen += [p.model_copy(update={"team_id": f"T{t:05d}"}) for p in members[:size]]
        members = members[size:]
        t += 1
    return _with(inp, chosen, mentors_per_group=per, time_limit_seconds=_limit(len(chosen)))


def tiny(form: Form, mentors: int, seekers: int, seed: int, **policy: Any) -> MatchingInput:
    inp = instance(max(4, seekers), form, seed=seed)
    ms = [p for p in inp.participants if p.role is Role.MENTOR][:mentors]
    ss = [p for p in inp.participants if p.role is not Role.MENTOR][:seekers]
    return _with(inp, ms + ss, **policy)


def _worldwide_fac(n: int) -> MatchingInput:
    return worldwide(fac(n, 15, max_timezone_distance_hours=3.0), 15)


def _one_department_fac(n: int) -> MatchingInput:
    return one_department(fac(n, 16, max_same_department=2), 16)


def _skewed_fac(n: int) -> MatchingInput:
    return skewed_capacity(fac(n, 18, group_members_min=2, group_members_max=4), 18)


def _loaded_fac(n: int) -> MatchingInput:
    return existing_load(fac(n, 19, group_members_min=2, group_members_max=4), 19)


def _locked_fac(n: int) -> MatchingInput:
    return with_overrides(fac(n, 20, group_members_min=2, group_members_max=4), 20, n // 20, n // 50, n // 10)


def _few_mentors_fac(n: int) -> MatchingInput:
    return few_mentors(fac(n, 22, group_members_min=2, group_members_max=4), n // 40)


def _locked_peer(n: int) -> MatchingInput:
    return with_overrides(peer(n, 35), 35, 0, max(2, n // 20), n // 10)


def _worldwide_peer(seed: int) -> MatchingInput:
    return worldwide(peer(15, seed), seed)


def cases() -> dict[str, tuple[int, Builder]]:
    """name -> (seekers, builder)."""
    c: dict[str, tuple[int, Builder]] = {}

    def add(name: str, size: int, fn: Callable[..., MatchingInput], *args: Any, **kw: Any) -> None:
        c[name] = (size, functools.partial(fn, *args, **kw))

    for n in (1_000, 5_000):
        add(f"fac default 3-8 s11 {n}", n, fac, n, 11)
        add(f"fac 2-6 cap1 s12 {n}", n, fac, n, 12, group_members_min=2, group_members_max=6)  # capacities 2-6
        add(f"fac 3-5 s13 {n}", n, fac, n, 13, group_members_min=3, group_members_max=5)
        add(f"fac 4-4 s14 {n}", n, fac, n, 14, group_members_min=4, group_members_max=4)
        add(f"fac worldwide tz3 s15 {n}", n, _worldwide_fac, n)
        add(f"fac one-dept dept2 s16 {n}", n, _one_department_fac, n)
        add(f"fac conflicts0.5 dept1 s17 {n}", n, fac, n, 17, conflicts=0.5, max_same_department=1)
        add(f"fac skewed-cap 2-4 s18 {n}", n, _skewed_fac, n)
        add(f"fac existing-load 2-4 s19 {n}", n, _loaded_fac, n)
        add(f"fac locks+excl 2-4 s20 {n}", n, _locked_fac, n)
        add(f"fac mpg2 2-6 s21 {n}", n, fac, n, 21, mentors_per_group=2, group_members_min=2, group_members_max=6)
        add(f"fac few-mentors 2-4 s22 {n}", n, _few_mentors_fac, n)
        add(f"fac nobody s23 {n}", n, nobody_placeable, n, 23)
    add("fac 2-4 s24 20000", 20_000, fac, 20_000, 24, group_members_min=2, group_members_max=4)
    for n in (15, 500, 2_000):
        add(f"peer default 3-6 s31 {n}", n, peer, n, 31)
        add(f"peer tight 3-5 s32 {n}", n, peer, n, 32, group_members_min=3, group_members_max=5, **TIGHT_PEER)
        add(f"peer loose 4-4 s33 {n}", n, peer, n, 33, group_members_min=4, group_members_max=4, **LOOSE_PEER)
        add(f"peer loose 2-6 s34 {n}", n, peer, n, 34, group_members_min=2, group_members_max=6, **LOOSE_PEER)
        add(f"peer locks 3-6 s35 {n}", n, _locked_peer, n)
    for seed in (41, 42, 43):
        add(f"peer15 worldwide s{seed}", 15, _worldwide_peer, seed)
    add("team 200 few-mentors(20) mpg2 s51", 200, team, 200, 51, 20)
    add("team 200 mpg1 mentors60 s52", 200, team, 200, 52, 60, per=1)
    add("team 1000 few-mentors(50) mpg3 s53", 1_000, team, 1_000, 53, 50, per=3)
    add("team 2000 mpg2 mentors300 s54", 2_000, team, 2_000, 54, 300)
    add("tiny team 1", 1, team, 1, 81, 2)
    for s in range(1, 6):
        add(f"tiny fac {s}", s, tiny, Form.FACILITATED_GROUP, 1, s, 60 + s, group_members_min=2, group_members_max=4)
        add(f"tiny peer {s}", s, tiny, Form.PEER_GROUP, 0, s, 70 + s)
    add("tiny fac 0 mentors", 5, tiny, Form.FACILITATED_GROUP, 0, 5, 66)
    add("tiny fac 0 seekers", 0, tiny, Form.FACILITATED_GROUP, 2, 0, 67)
    add("tiny peer 0", 0, tiny, Form.PEER_GROUP, 0, 0, 68)
    return c


# checks (rules from validate, nothing from the solver) --------------------------------------------------


def group_ok(inp: MatchingInput, by_id: dict[str, ParticipantProfile], mentors: list[str], members: list[str]) -> bool:
    pol = inp.policy
    if not pol.group_members_min <= len(members) <= pol.group_members_max:
        return False
    departments = Counter(by_id[x].department for x in mentors + members)
    if pol.max_same_department is not None and max(departments.values()) > pol.max_same_department:
        return False
    for m in mentors:
        for x in members:
            if _pair_problems(by_id[m], by_id[x], inp, mentor_pair=True):
                return False
    for x, y in combinations(mentors, 2):
        if _apart_problems(by_id[x], by_id[y], inp):
            return False
    # peers: one language all speak (docs/matching.md; validate checks languages pair by pair only)
    spoken = set.intersection(*(set(by_id[x].languages) for x in members))
    if inp.form is Form.PEER_GROUP and pol.require_shared_language and not spoken:
        return False
    return not any(_pair_problems(by_id[x], by_id[y], inp, mentor_pair=False) for x, y in combinations(members, 2))


def certificates(inp: MatchingInput, res: MatchingResult, budget_s: float = 30.0) -> tuple[int, int, bool]:
    """(insertable, lottery swaps, complete): unplaced people who fit a group as it stands, and unplaced
    people who could take the place of a member drawn after them (locked people aside)."""
    if inp.form is Form.TEAM:
        return 0, 0, True
    by_id = {p.participant_id: p for p in inp.participants}
    locked = {x for o in inp.overrides if o.kind is OverrideKind.LOCK_PAIR for x in o.participant_ids}
    groups = [([m.participant_id for m in g.members if m.role is Role.MENTOR],
               [m.participant_id for m in g.members if m.role is not Role.MENTOR]) for g in res.groups]  # fmt: skip
    deadline = time.perf_counter() + budget_s
    ins = lot = 0
    for u in sorted(res.unplaced, key=lambda u: res.lottery.get(u.participant_id, 0)):
        if time.perf_counter() > deadline:
            return ins, lot, False
        pid = u.participant_id
        if pid not in by_id or by_id[pid].role is Role.MENTOR or pid in locked:
            continue
        rank = res.lottery.get(pid, 0)
        fits = swaps = False
        for mentors, members in groups:
            if any(_pair_problems(by_id[m], by_id[pid], inp, mentor_pair=True) for m in mentors):
                continue
            room = len(members) < inp.policy.group_members_max
            if not fits and room and group_ok(inp, by_id, mentors, [*members, pid]):
                fits = True
            if not swaps:
                for x in members:
                    later = x not in locked and res.lottery.get(x, 0) > rank
                    if later and group_ok(inp, by_id, mentors, [y if y != x else pid for y in members]):
                        swaps = True
                        break
            if fits and swaps:
                break
        ins += fits
        lot += swaps and not fits
    return ins, lot, True


def lock_breaks(inp: MatchingInput, res: MatchingResult) -> list[str]:
    """Locks that do not hold: one of the two placed alone (a mentor may lead groups without the other),
    or both placed with no group in common (every group a mentor leads is read)."""
    groups_of: dict[str, set[str]] = {}
    for g in res.groups:
        for m in g.members:
            groups_of.setdefault(m.participant_id, set()).add(g.group_id)
    out = []
    for o in inp.overrides:
        if o.kind is not OverrideKind.LOCK_PAIR:
            continue
        a, b = o.participant_ids
        ga, gb = groups_of.get(a, set()), groups_of.get(b, set())
        if bool(ga) != bool(gb) and not (ga and _is_mentor(inp, a)):
            out.append(f"lock {a}/{b}: only one placed")
        elif ga and gb and not ga & gb:
            out.append(f"lock {a}/{b}: placed apart")
    return out


def _is_mentor(inp: MatchingInput, pid: str) -> bool:
    return any(p.participant_id == pid and p.role is Role.MENTOR for p in inp.participants)


def reason_lies(inp: MatchingInput, res: MatchingResult) -> list[str]:
    """Unplaced reasons that are false of the instance: the people count, and, for the facilitated form,
    each code against what validate's pair rules say of the person's mentors."""
    out: list[str] = []
    seekers = {p.participant_id for p in inp.participants if p.role is not Role.MENTOR}
    placed = {m.participant_id for g in res.groups for m in g.members if m.role is not Role.MENTOR}
    listed = Counter(u.participant_id for u in res.unplaced)
    missing = seekers - placed - set(listed)
    if missing:
        out.append(f"{len(missing)} seekers neither placed nor unplaced, e.g. {sorted(missing)[0]}")
    out += [f"{p} listed unplaced {n} times" for p, n in listed.items() if n > 1]
    out += [f"{p} unplaced but not a seeker" for p in listed if p not in seekers]
    if inp.form is not Form.FACILITATED_GROUP:
        if inp.form is Form.PEER_GROUP:
            by_id = {p.participant_id: p for p in inp.participants}
            for u in res.unplaced:
                if u.reason_code.value == "no_eligible_partner":
                    me = by_id[u.participant_id]
                    one_per_department = inp.policy.max_same_department == 1
                    mates = [q for q in inp.participants if q.participant_id != me.participant_id
                             and not _pair_problems(me, q, inp, mentor_pair=False)
                             and not (one_per_department and q.department == me.department)]  # fmt: skip
                    if len(mates) >= max(1, inp.policy.group_members_min - 1):
                        out.append(f"{u.participant_id}: no_eligible_partner, but {len(mates)} compatible peers")
        return out
    by_id = {p.participant_id: p for p in inp.participants}
    mentors = [p for p in inp.participants if p.role is Role.MENTOR]
    excluded = {frozenset(o.participant_ids) for o in inp.overrides if o.kind is OverrideKind.EXCLUDE_PAIR}
    for u in res.unplaced:
        found = by_id.get(u.participant_id)
        if found is None:
            continue
        me = found
        one_per_department = inp.policy.max_same_department == 1  # the mentor counts in the bound
        eligible = [m for m in mentors if not _pair_problems(m, me, inp, mentor_pair=True)
                    and frozenset((m.participant_id, me.participant_id)) not in excluded
                    and not (one_per_department and m.department == me.department)]  # fmt: skip
        room = [m for m in eligible if inp.existing_load.get(m.participant_id, 0) < (m.capacity or 0)]
        code = u.reason_code.value
        if code == "no_eligible_partner" and eligible:
            out.append(f"{me.participant_id}: no_eligible_partner but {len(eligible)} eligible mentors")
        if code == "capacity_exhausted" and (not eligible or room):
            out.append(f"{me.participant_id}: capacity_exhausted but {len(eligible)} eligible, {len(room)} with room")
        if code in ("lost_lottery", "group_size") and not room:
            out.append(f"{me.participant_id}: {code} but no eligible mentor with room")
    return out


def run_one(name: str, seed: int, time_limit: float | None = None) -> dict[str, Any]:
    _size, build = cases()[name]
    inp = build()
    if time_limit is not None:  # another limit than the case's (e.g. to see what a longer run places)
        inp = _with(inp, time_limit_seconds=time_limit)
    out: dict[str, Any] = {"name": name, "seekers": sum(p.role is not Role.MENTOR for p in inp.participants),
                           "mentors": sum(p.role is Role.MENTOR for p in inp.participants),
                           "limit": inp.policy.time_limit_seconds}  # fmt: skip
    started, cpu = time.perf_counter(), time.process_time()
    try:
        res = match(inp, seed)
        problems = validate(inp, res)
    except Exception as exc:  # a probe reports every failure
        out.update(error=f"{type(exc).__name__}: {exc}"[:300], wall=time.perf_counter() - started)
        return out
    out["wall"] = time.perf_counter() - started
    out["cpu"] = time.process_time() - cpu
    out["load"] = os.getloadavg()[0]
    s = res.stats
    locks = lock_breaks(inp, res)
    out.update(placed=s.placed_count, bound=s.placed_bound, fit=s.total_fit, status=s.status, groups=len(res.groups),
               viol=len(problems) + len(locks), viol_first=(problems + locks)[:3], digest=digest(res),
               maxload=s.max_load_ratio, notes=s.notes[:6])  # fmt: skip
    lies = reason_lies(inp, res)
    out.update(lies=len(lies), lies_first=lies[:3], codes=dict(Counter(u.reason_code.value for u in res.unplaced)))
    ins, lot, complete = certificates(inp, res)
    out.update(ins=ins, lot=lot, cert_complete=complete)
    try:  # the stats round the ratio to 6 decimals (1/3 -> 0.333333, x 3 groups floors to 0): undo that
        ratio = res.stats.max_load_ratio + 1e-6
        bumped = res.model_copy(update={"stats": res.stats.model_copy(update={"max_load_ratio": ratio})})
        idle, fit_bound = idle_and_fit_bound(inp, bumped)
    except Exception as exc:
        idle, fit_bound = None, None
        out["bound_error"] = f"{type(exc).__name__}: {exc}"[:200]
    out.update(idle=idle, fit_bound=fit_bound)
    if inp.form is Form.FACILITATED_GROUP and inp.policy.max_same_department is not None:
        from bench.probes.department_bound import lp_bound  # it imports this module

        out["dept_lp"] = lp_bound(inp)
    out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def fmt(runs: list[dict[str, Any]]) -> str:
    r = runs[0]
    if "error" in r:
        return f"{r['name']:<36} ERROR {r['error']}"
    gap = "-" if not r.get("fit_bound") else f"{(r['fit_bound'] - r['fit']) / r['fit_bound']:.2%}"
    fb = "-" if r.get("fit_bound") is None else f"{r['fit_bound']:,.0f}"
    det = "yes" if len({x.get("digest") for x in runs}) == 1 else "NO"
    walls = "/".join(f"{x['wall']:.1f}" for x in runs)
    cpus = "/".join(f"{x['cpu']:.1f}" for x in runs)
    return (
        f"{r['name']:<36} {r['seekers']:>6}/{r['mentors']:<5} {r['placed']:>6}/{r['bound']:<6} {r['fit']:>9,.0f} "
        f"{fb:>9} {gap:>6} {walls:>11}/{r['limit']:<4g} {cpus:>11} {max(x['rss_mib'] for x in runs):>6.0f} "
        f"{r['load']:>4.1f} {r['viol']:>3} {r['lies']:>3} {r['ins']:>3} {r['lot']:>3}"
        f"{'' if r['cert_complete'] else '+'} {det:>3} {r['status']}"
    )


HEADER = (
    f"{'case':<36} {'seek/ment':>12} {'placed/bound':>13} {'fit':>9} {'fit bnd':>9} {'gap':>6} "
    f"{'wall s/limit':>16} {'cpu s':>11} {'MiB':>6} {'load':>4} {'vio':>3} {'lie':>3} {'ins':>3} {'lot':>3} "
    f"{'det':>3} status"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--only", default="", help="cases whose name contains this")
    parser.add_argument("--max-size", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--jsonl", default="", help="also append every run's record to this file")
    parser.add_argument("--time-limit", type=float, default=None, help="override every case's time limit")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.seed, args.time_limit)))
        return
    chosen = [(n, s) for n, (s, _) in cases().items() if args.only in n and s <= args.max_size]
    if args.list:
        print("\n".join(n for n, _ in chosen))
        return
    print(HEADER, flush=True)
    for name, _ in chosen:
        runs = []
        for k in range(args.runs):
            env = {**os.environ, "PYTHONHASHSEED": str(k + 1)}
            command = [sys.executable, "-m", "bench.probes.group_probe", "--child", name, "--seed", str(args.seed)]
            if args.time_limit is not None:
                command += ["--time-limit", str(args.time_limit)]
            proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
            lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
            runs.append(json.loads(lines[-1]) if lines else {"name": name, "error": proc.stderr.strip()[-300:]})
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                for r in runs:
                    f.write(json.dumps(r) + "\n")
        print(fmt(runs), flush=True)
        for r in runs[:1]:
            extra = r.get("viol_first", []) + r.get("lies_first", [])
            if extra or r.get("bound_error"):
                print("    ", extra, r.get("bound_error", ""), flush=True)
            if r.get("dept_lp") is not None:
                print(f"     independent department LP bound on placed: {r['dept_lp']:,}", flush=True)


if __name__ == "__main__":
    main()
