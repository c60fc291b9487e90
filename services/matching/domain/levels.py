"""Lexicographic optimisation with CP-SAT: solve one level, fix its optimum, go to the next.

A single weighted sum would let a lower level (fit) buy away a higher one (places); solving the
levels in order with each optimum fixed as a constraint cannot. Each solve is hinted with the
previous solution and seeded.

Reproducibility and the time limit: each level's budget is a fixed share of
``DETERMINISTIC_SHARE`` x the *configured* time limit, spent as CP-SAT deterministic time with a fixed
number of interleaved workers, so the same input and seed give the same groups on an idle or a loaded
machine. The limit an administrator sets is wall-clock time, though, and a busy machine stretches
deterministic time: every solve therefore also gets the wall-clock time left until the run's deadline
(``WALL_DEADLINE_SHARE`` x the limit after the run started, preparation included). A solve that the
clock stops before its deterministic budget is *discarded*: the solution that stands is the one the
last level completed within its budget (deterministic), no later level runs, and the notes say where
the clock stopped it. So a result never depends on how far a solver got before the clock struck; what
depends on the machine is only how many levels completed (the notes say which).

A level that finds no solution never raises: the best solution found so far stands (the caller falls
back to its greedy solution when even the first level found nothing), and the level is reported as
``UNKNOWN``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from services.matching.domain.common import Progress
from services.matching.domain.model import SolveRecord

_log = logging.getLogger(__name__)


def _finite(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


_NAMES = {
    cp_model.OPTIMAL: "OPTIMAL",
    cp_model.FEASIBLE: "FEASIBLE",
    cp_model.INFEASIBLE: "INFEASIBLE",
    cp_model.MODEL_INVALID: "MODEL_INVALID",
    cp_model.UNKNOWN: "UNKNOWN",
}

SHARES = {"placed": 0.3, "lottery": 0.3, "max_load_ratio": 0.1, "mentors_used": 0.1, "fit": 0.2}
"""Each level's share of the configured time limit (deterministic time)."""
LOTTERY_CHECK_SHARE = 0.05
"""One feasibility check of the lottery walk: at most this share of the limit (and at most 5 s)."""
DETERMINISTIC_SHARE = 0.6
"""The levels' deterministic budgets add up to this share of the limit: on an idle machine the run ends
well inside it (CP-SAT's deterministic second is about a wall second on one idle core, and each solve
has overhead its deterministic clock does not count)."""
WALL_DEADLINE_SHARE = 0.85
"""The wall-clock deadline of the solves, as a share of the limit after the run started: the rest is for
building and checking the result, so the run stays within the limit (10 % over at most)."""


def run_deadline(started: float, time_limit_s: float) -> float:
    """The wall-clock deadline of a run's solves (``time.perf_counter()`` scale)."""
    return started + time_limit_s * WALL_DEADLINE_SHARE


def past_deadline(started: float, time_limit_s: float) -> bool:
    """Past the run's wall-clock deadline for solving (preparation included): skip optional work."""
    return time.perf_counter() > run_deadline(started, time_limit_s)


@dataclass
class LevelOutcome:
    name: str
    value: float
    bound: float
    status: str
    found: bool = True


@dataclass
class Levels:
    model: cp_model.CpModel
    seed: int
    time_limit_s: float
    progress: Progress
    outcomes: list[LevelOutcome] = field(default_factory=list)
    solver: cp_model.CpSolver = field(default_factory=cp_model.CpSolver)
    values: list[int] | None = None
    """The best complete solution found so far (every later level keeps it feasible)."""
    wall_guard_hit: bool = False
    deterministic_used: float = 0.0
    last_status: str = "UNKNOWN"
    fixed: dict[int, int] = field(default_factory=dict)
    """Variable index -> value the lottery decided; the final solution must keep them."""
    done_share: float = 0.0
    deadline: float | None = None
    """Wall-clock deadline shared by every solve of the run (components included); default from the limit."""
    _deadline: float = 0.0
    stopped_at: str | None = None
    """The level whose solve the wall clock stopped (its result discarded, no later level run)."""
    records: list[SolveRecord] = field(default_factory=list)
    """Every solve of this model, in order (``Stats.solves``)."""
    level: str = "placed"
    """The level being solved (named in the log, the notes and the clock's stop)."""

    def __post_init__(self) -> None:
        own = run_deadline(time.perf_counter(), self.time_limit_s)
        self._deadline = self.deadline if self.deadline is not None else own

    def out_of_time(self) -> bool:
        """Past the run's wall-clock deadline: skip optional work (heuristics) that would overrun it."""
        return self.wall_guard_hit or time.perf_counter() >= self._deadline

    def budget(self, share: float) -> float:
        """Deterministic seconds for a share of the configured limit: never depends on the clock."""
        return max(0.02, self.time_limit_s * DETERMINISTIC_SHARE * share)

    def hint(self, values: Mapping[cp_model.IntVar, int]) -> None:
        """A starting solution (e.g. the greedy's), possibly partial; CP-SAT completes it."""
        hint = self.model.proto.solution_hint
        hint.vars.clear()
        hint.values.clear()
        hint.vars.extend(v.index for v in values)
        hint.values.extend(int(x) for x in values.values())

    def adopt_hint(self) -> bool:
        """Make the hint (e.g. the greedy's) the solution that stands, when it is feasible: one solve with
        every hinted variable fixed, no presolve (cheap, deterministic). So a level whose own search
        finds nothing in a tiny budget (presolve alone can eat it) still has the hint's value."""
        solution = self._fixed_solve(None)
        if solution is None:
            return False
        self.start_from(solution[0])
        return True

    def _fixed_solve(self, expr: cp_model.LinearExprT | None) -> tuple[list[int], float] | None:
        """The hinted solution completed with every hinted variable fixed, and ``expr``'s value in it."""
        left = self._deadline - time.perf_counter()
        if self.wall_guard_hit or left <= 0.01:
            self._clock_stopped()
            return None
        solver = cp_model.CpSolver()
        p = solver.parameters
        p.fix_variables_to_their_hinted_value = True
        p.cp_model_presolve = False
        p.num_workers = 1
        p.random_seed = self.seed % (2**31)
        p.max_time_in_seconds = left
        if expr is not None:
            self.model.minimize(expr)
        status = solver.solve(self.model)
        if expr is not None:
            self.model.clear_objective()  # type: ignore[no-untyped-call]
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            if status == cp_model.UNKNOWN:
                self._clock_stopped()
            return None
        return list(solver.response_proto.solution), solver.objective_value if expr is not None else 0.0

    def start_from(self, values: list[int]) -> None:
        """A complete solution that keeps every level fixed so far (e.g. a heuristic's improvement of the
        last one found): it becomes the solution that stands and the next solve's hint."""
        self.values = list(values)
        hint = self.model.proto.solution_hint
        hint.vars.clear()
        hint.values.clear()
        hint.vars.extend(range(len(self.values)))
        hint.values.extend(self.values)

    def solve(self, budget: float) -> bool:
        """One deterministic solve; False when it found nothing, or when the wall clock stopped it before
        its deterministic budget (then its solution, which depends on the machine, is discarded)."""
        left = self._deadline - time.perf_counter()
        if self.wall_guard_hit or left <= 0.01:
            self._clock_stopped()
            return False
        p = self.solver.parameters
        p.random_seed = self.seed % (2**31)
        p.num_workers = 2
        p.interleave_search = True
        p.max_deterministic_time = budget
        p.max_time_in_seconds = left
        status = self.solver.solve(self.model)
        self.last_status = _NAMES.get(status, "UNKNOWN")
        if status == cp_model.MODEL_INVALID:  # a bug in the model, not a time-out: never hide it
            raise RuntimeError(f"CP-SAT model invalid: {self.model.validate()}")
        response = self.solver.response_proto
        self.deterministic_used += response.deterministic_time
        undecided = status in (cp_model.UNKNOWN, cp_model.FEASIBLE)
        clock = undecided and response.deterministic_time < budget * 0.98 and self.solver.wall_time >= left * 0.95
        self._record(budget, "CLOCK_STOPPED" if clock else self.last_status)
        if clock:
            self._clock_stopped()
            return False
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            self.values = list(response.solution)
            hint = self.model.proto.solution_hint
            hint.vars.clear()
            hint.values.clear()
            hint.vars.extend(range(len(self.values)))
            hint.values.extend(self.values)
            return True
        return False

    def _record(self, budget: float, status: str) -> None:
        """One solve in the run's log and statistics: model size, status, objective, bound and time."""
        proto, response = self.model.proto, self.solver.response_proto
        has_objective = self.model.has_objective() and status in ("OPTIMAL", "FEASIBLE")
        record = SolveRecord(
            level=self.level,
            variables=len(proto.variables),
            constraints=len(proto.constraints),
            status=status,
            objective=_finite(response.objective_value) if has_objective else None,
            bound=_finite(response.best_objective_bound) if has_objective else None,
            budget_deterministic_s=round(budget, 3),
            deterministic_s=round(response.deterministic_time, 3),
            wall_s=round(response.wall_time, 3),
        )
        self.records.append(record)
        _log.info(
            "matching level %s: %d variables, %d constraints, %s, objective %s, bound %s, %.3f det s of %.3f, %.3f s",
            record.level, record.variables, record.constraints, record.status, record.objective, record.bound,
            record.deterministic_s, record.budget_deterministic_s, record.wall_s,
        )  # fmt: skip

    def _clock_stopped(self) -> None:
        self.wall_guard_hit = True
        self.last_status = "UNKNOWN"
        if self.stopped_at is None:
            self.stopped_at = self.level

    def value(self, var: cp_model.IntVar) -> int:
        if self.values is None:
            raise RuntimeError("no solution found")
        return self.values[var.index]

    def report(self, name: str, share: float) -> None:
        self.done_share = min(1.0, self.done_share + share)
        self.progress(f"level {name} done", self.done_share)

    def optimise(
        self,
        name: str,
        expr: cp_model.LinearExprT,
        *,
        maximize: bool,
        keep: bool = True,
        at_most: float | None = None,
    ) -> LevelOutcome:
        """Solve this level and keep its optimum (or the best found) as a constraint for the next
        (``keep=False``: the caller adds the constraint itself, e.g. one value across components).
        ``at_most``: deterministic seconds at most, below the level's share of the limit."""
        share = SHARES[name]
        self.level = name
        self.progress(f"solving level {name}", self.done_share)
        if maximize:
            self.model.maximize(expr)
        else:
            self.model.minimize(expr)
        budget = self.budget(share) if at_most is None else min(at_most, self.budget(share))
        found = self.solve(budget)
        self.model.clear_objective()  # type: ignore[no-untyped-call]
        value: float | None = None
        if found:
            value, bound = round(self.solver.objective_value), self.solver.best_objective_bound
            status = self.last_status
        elif self.values is not None and not self.wall_guard_hit:
            # the solution that stands (the previous level's, or the adopted hint) is this level's value
            standing = self._fixed_solve(expr)
            if standing is not None:
                value, bound, status = round(standing[1]), float("nan"), "FEASIBLE"
        if value is None:
            outcome = LevelOutcome(name, float("nan"), float("nan"), "UNKNOWN", found=False)
        else:
            if keep and maximize:
                self.model.add(expr >= value)
            elif keep:
                self.model.add(expr <= value)
            outcome = LevelOutcome(name, float(value), float(bound), status)
        self.outcomes.append(outcome)
        self.report(name, share)
        return outcome

    def keep_standing(
        self, name: str, expr: cp_model.LinearExprT, value: int, *, maximize: bool, proven: bool = True
    ) -> LevelOutcome:
        """The level's value in the solution that stands (``value``, which the caller counted), kept as a
        constraint as ``optimise`` does, without a solve. ``proven``: a bound from outside the model shows
        it is the optimum (facilitated placement: the max flow, when the greedy's hint meets it), so a
        solve would have nothing to find and would cost its presolve and a first batch of search (0.7 s
        of wall time in the 3 s limit at 1,000 mentees). Otherwise the level is reported unproven."""
        if self.values is None:
            raise RuntimeError("keep_standing needs a standing solution")
        self.level = name
        self.model.add(expr >= value if maximize else expr <= value)
        outcome = LevelOutcome(
            name, float(value), float(value) if proven else math.nan, "OPTIMAL" if proven else "FEASIBLE"
        )
        self.outcomes.append(outcome)
        self.report(name, SHARES[name])
        return outcome

    def feasible_with(self, assumptions: Sequence[cp_model.LiteralT], budget: float) -> bool | None:
        """Is the model feasible with these literals true? None when the budget ran out undecided."""
        self.model.clear_assumptions()
        self.model.add_assumptions(list(assumptions))
        found = self.solve(budget)
        status = self.last_status
        self.model.clear_assumptions()
        if found:
            return True
        if status == "INFEASIBLE":
            return False
        return None

    @property
    def keeps_lottery(self) -> bool:
        """Does the solution that stands keep every lottery decision? (It may not if every level after
        the walk found nothing and the last solution found is one of the walk's own checks.)"""
        return self.values is not None and all(self.values[i] == v for i, v in self.fixed.items())

    @property
    def all_optimal(self) -> bool:
        return all(o.status == "OPTIMAL" for o in self.outcomes)


@dataclass
class CombinedLevels:
    """Independent components solved level by level: their outcomes read as one run's."""

    parts: list[Levels]

    @property
    def all_optimal(self) -> bool:
        return all(p.all_optimal for p in self.parts)

    @property
    def keeps_lottery(self) -> bool:
        return all(p.keeps_lottery for p in self.parts)

    @property
    def wall_guard_hit(self) -> bool:
        return any(p.wall_guard_hit for p in self.parts)

    @property
    def records(self) -> list[SolveRecord]:
        """Every component's solves, each marked with its component (0-based, canonical order)."""
        return [r.model_copy(update={"component": n}) for n, p in enumerate(self.parts) for r in p.records]

    @property
    def stopped_at(self) -> str | None:
        return next((p.stopped_at for p in self.parts if p.stopped_at is not None), None)

    @property
    def outcomes(self) -> list[LevelOutcome]:
        names = list(dict.fromkeys(o.name for p in self.parts for o in p.outcomes))
        out = []
        for name in names:
            mine = [o for p in self.parts for o in p.outcomes if o.name == name]
            found = len(mine) == len(self.parts) and all(o.found for o in mine)
            combine = max if name == "max_load_ratio" else sum  # one max ratio; sums elsewhere
            value = float(combine(o.value for o in mine)) if found else float("nan")
            bound = float(combine(o.bound for o in mine)) if found else float("nan")
            status = "OPTIMAL" if found and all(o.status == "OPTIMAL" for o in mine) else "FEASIBLE"
            out.append(LevelOutcome(name, value, bound, status if found else "UNKNOWN", found=found))
        return out


def lottery_level(
    levels: Levels,
    placed: Mapping[str, cp_model.IntVar],
    order: list[str],
    quota: int,
    weights: Mapping[str, int] | None = None,
    rule_out: Callable[[list[str], str], bool] | None = None,
) -> tuple[list[str], bool]:
    """Among placements of the fixed size, the one that follows the lottery exactly.

    Walks the lottery order and decides each person in turn, finally: in if they can be placed
    together with every decision so far, out otherwise. That is the lexicographic optimum by
    definition. Most decisions need no solve: the last solution found (a *witness*, which keeps every
    decision so far and the placed count) proves that everyone it places next in order can be placed,
    so the walk jumps over them. Only a person the witness leaves out costs a check with solver
    assumptions: feasible (in, and the new solution is the next witness) or infeasible (out). The
    number placed is then fixed to ``quota`` exactly, so no later level can place anyone the walk did
    not decide on.

    ``order`` should hold only people with some place to go (others are out anyway). The whole walk
    spends at most the lottery's share of the configured limit (deterministic time); if that runs
    out, the decisions made so far stand and the rest of the placement is the solver's (reported as
    unproven). Returns who is placed and whether every decision was proven.

    ``weights`` (teams: their sizes) count each decision in people: ``quota`` is then the number of
    people level 1 placed, not the number of teams its solution happened to have (two teams of 2 and
    one of 4 place as many people).

    ``rule_out(taken, person)``, when given, is a proven relaxation (facilitated groups: the placement
    bound's flow): True means ``person`` cannot be placed together with ``taken``, so they are out
    without a solve (a check CP-SAT often cannot finish in its budget: proving that no grouping exists).
    """
    taken: list[str] = []
    out: list[str] = []
    proven = True
    weight = weights or {}
    count = 0  # people (or entries) taken so far
    total = levels.budget(SHARES["lottery"])
    per_check = min(5.0, levels.budget(LOTTERY_CHECK_SHARE))
    spent_before = levels.deterministic_used

    def left() -> float:
        return total - (levels.deterministic_used - spent_before)

    levels.level = "lottery"
    position = 0
    while count < quota and position < len(order) and not levels.wall_guard_hit:
        witness = levels.values
        while (
            witness is not None
            and position < len(order)
            and count < quota
            and witness[placed[order[position]].index] == 1
        ):
            taken.append(order[position])
            count += weight.get(order[position], 1)
            position += 1
        if count >= quota or position >= len(order):
            break
        if left() <= 0.01:
            proven = False
            break
        person = order[position]
        if rule_out is not None and rule_out(taken, person):
            out.append(person)
            position += 1
            continue
        fixed: list[cp_model.LiteralT] = [placed[p] for p in taken]
        fixed += [~placed[p] for p in out]
        answer = levels.feasible_with([*fixed, placed[person]], min(per_check, left()))
        if levels.wall_guard_hit:  # the clock, not the budget, stopped it: decide nothing on it
            proven = False
            break
        if answer is None:  # undecided in its budget: treated as out, and the walk is not proven
            proven = False
        if answer:
            taken.append(person)
            count += weight.get(person, 1)
        else:
            out.append(person)
        position += 1
    for p in taken:
        levels.model.add(placed[p] == 1)
        levels.fixed[placed[p].index] = 1
    for p in out:
        levels.model.add(placed[p] == 0)
        levels.fixed[placed[p].index] = 0
    if count < quota:
        proven = False
    levels.model.add(sum(v * weight.get(p, 1) for p, v in placed.items()) == quota)
    levels.progress("level lottery done", min(1.0, SHARES["placed"] + SHARES["lottery"]))
    levels.done_share = SHARES["placed"] + SHARES["lottery"]
    return taken, proven
