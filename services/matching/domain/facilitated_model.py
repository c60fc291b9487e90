"""The facilitated-group CP-SAT model: its variables in one container, each rule one named function.

Each ``add_*`` function adds one constraint family to the model and is tested alone (fix a few
variables, expect FEASIBLE or INFEASIBLE), as the CP-SAT primer does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model


@dataclass
class FacilitatedModel:
    model: cp_model.CpModel
    placed: dict[str, cp_model.IntVar]
    x_of: dict[str, dict[tuple[int, int], cp_model.IntVar]]
    members_of: dict[tuple[int, int], list[tuple[str, cp_model.IntVar]]]
    co: dict[tuple[int, int], list[tuple[int, cp_model.IntVar]]]
    opened: dict[str, list[cp_model.IntVar]]
    fit_terms: Sequence[cp_model.LinearExprT]
    hint: dict[cp_model.IntVar, int]
