"""Lexicographic optimisation with CP-SAT: solve one level, fix its optimum, go to the next.

A single weighted sum would let a lower level (fit) buy away a higher one (places); solving the
levels in order with each optimum fixed as a constraint cannot. Each solve is hinted with the
previous solution and seeded; search is deterministic (interleaved workers, deterministic time), so
the same input and seed give the same groups.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from services.matching.domain.common import Progress

_NAMES = {
    cp_model.OPTIMAL: "OPTIMAL",
    cp_model.FEASIBLE: "FEASIBLE",
    cp_model.INFEASIBLE: "INFEASIBLE",
    cp_model.MODEL_INVALID: "MODEL_INVALID",
    cp_model.UNKNOWN: "UNKNOWN",
}


@dataclass
class LevelOutcome:
    name: str
    value: float
    bound: float
    status: str


@dataclass
class Levels:
    model: cp_model.CpModel
    seed: int
    time_limit_s: float
    progress: Progress
    outcomes: list[LevelOutcome] = field(default_factory=list)
    solver: cp_model.CpSolver = field(default_factory=cp_model.CpSolver)
    _started: float = field(default_factory=time.perf_counter)
    _solved_once: bool = False
    last_status: str = "UNKNOWN"

    def _budget(self, levels_left: int) -> float:
        remaining = self.time_limit_s - (time.perf_counter() - self._started)
        return max(0.5, remaining / max(1, levels_left))

    def _solve(self, budget: float) -> object:
        p = self.solver.parameters
        p.random_seed = self.seed % (2**31)
        p.num_workers = 2
        p.interleave_search = True
        p.max_deterministic_time = budget
        p.max_time_in_seconds = budget * 4  # a guard only; the deterministic limit is what binds
        status = self.solver.solve(self.model)
        self.last_status = _NAMES.get(status, "UNKNOWN")
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            self._solved_once = True
            self._hint_from_solution()
        return status

    def _hint_from_solution(self) -> None:
        proto = self.model.proto
        self.model.clear_hints()  # type: ignore[no-untyped-call]
        for index in range(len(proto.variables)):
            self.model.add_hint(self.model.get_int_var_from_proto_index(index), self.solver.value(
                self.model.get_int_var_from_proto_index(index)))  # fmt: skip

    def optimise(self, name: str, expr: cp_model.LinearExprT, *, maximize: bool, levels_left: int) -> LevelOutcome:
        """Solve this level and keep its optimum (or the best found) as a constraint for the next."""
        self.progress(f"solving level {name}", 0.0)
        if maximize:
            self.model.maximize(expr)
        else:
            self.model.minimize(expr)
        status = self._solve(self._budget(levels_left))
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            raise RuntimeError(f"level {name}: solver returned {self.last_status}")
        value = round(self.solver.objective_value)
        bound = self.solver.best_objective_bound
        if maximize:
            self.model.add(expr >= value)
        else:
            self.model.add(expr <= value)
        self.model.clear_objective()  # type: ignore[no-untyped-call]
        outcome = LevelOutcome(name, float(value), float(bound), self.last_status)
        self.outcomes.append(outcome)
        return outcome

    def feasible_with(self, assumptions: Sequence[cp_model.LiteralT], levels_left: int) -> bool | None:
        """Is the model feasible with these literals true? None when the time ran out undecided."""
        self.model.clear_assumptions()
        self.model.add_assumptions(list(assumptions))
        status = self._solve(min(5.0, self._budget(levels_left)))
        self.model.clear_assumptions()
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return True
        if status == cp_model.INFEASIBLE:
            return False
        return None

    @property
    def all_optimal(self) -> bool:
        return all(o.status == "OPTIMAL" for o in self.outcomes)


def lottery_level(
    levels: Levels, placed: dict[str, cp_model.IntVar], order: list[str], quota: int, levels_left: int
) -> tuple[list[str], bool]:
    """Among placements of the fixed size, the one that follows the lottery exactly.

    Walks the lottery order: take the longest run of next people that can all be placed together with
    those already taken; the person after that run cannot be, so they are fixed out. This is the
    lexicographic optimum (each decision is final and made in rank order). Returns who is placed and
    whether every decision was proven (False if a check ran out of time: then the best found stands).
    """
    taken: list[str] = []
    out: list[str] = []
    proven = True
    position = 0
    while len(taken) < quota and position < len(order):
        need = quota - len(taken)
        run = order[position : position + need]
        fixed: list[cp_model.LiteralT] = [placed[p] for p in taken]
        fixed += [~placed[p] for p in out]
        answer = levels.feasible_with([*fixed, *(placed[p] for p in run)], levels_left)
        if answer:
            taken += run
            break
        if answer is None:
            proven = False
        lo, hi = 0, len(run) - 1  # the longest feasible prefix of ``run`` has length lo
        while lo < hi:
            mid = (lo + hi + 1) // 2
            ok = levels.feasible_with([*fixed, *(placed[p] for p in run[:mid])], levels_left)
            if ok is None:
                proven = False
            if ok:
                lo = mid
            else:
                hi = mid - 1
        taken += run[:lo]
        out.append(run[lo])
        position += lo + 1
    for p in taken:
        levels.model.add(placed[p] == 1)
    for p in out:
        levels.model.add(placed[p] == 0)
    return taken, proven
