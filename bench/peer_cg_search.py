"""The exact pricing step of ``bench/peer_cg.py``: a depth-first search in C (``peer_cg_kernel.c``, built
on first use with the system's C compiler and loaded by ctypes), because the same search in Python or as
CP-SAT models did not end at 500 peers.

Measured on the benchmark's 500-peer pool at near-optimal duals: a CP-SAT model of one peer's pricing
(x_j per compatible peer, y_jk per pair with fit, |S| fixed, the department limit; one worker) over its
370 candidates had proven no bound below +24 after 60 s (the answer is below 0), over 80 of them it took
4 s to OPTIMAL; this search proves the same answers in about 0.07 s a peer, 35 s for all 499.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.peer_bound import PeerProblem

KERNEL = Path(__file__).with_name("peer_cg_kernel.c")
MAX_SIZE = 7
"""The kernel's arrays hold groups of up to this many members."""
EPS = 1e-6
"""A group counts as gaining when its red is above this; each peer's proven maximum is at least this, which
covers the rounding of the double sums (some 1e-13) with room."""


@dataclass(frozen=True)
class Tables:
    """The pool in the kernel's layout: ``ok`` (compatible and a language in common), ``w`` (fit where ok,
    else 0), departments, language bits, and the order whose first member roots each group."""

    ok: npt.NDArray[np.uint8]
    w: npt.NDArray[np.int32]
    dept: npt.NDArray[np.int32]
    n_dept: int
    limit: int
    lang: npt.NDArray[np.uint64]
    pos: npt.NDArray[np.int32]
    size_min: int
    size_max: int

    @classmethod
    def of(cls, pp: PeerProblem) -> Tables:
        """``pp`` with the order of fewest compatible peers first: a peer with many then comes late and
        has few peers after it, which keeps the largest searches smaller."""
        if pp.size_max > MAX_SIZE:
            raise ValueError(f"groups above {MAX_SIZE} members: the pricing kernel does not hold them")
        ok = pp.compat & ((pp.lang[:, None] & pp.lang[None, :]) != 0)
        order = np.argsort(ok.sum(axis=1), kind="stable")
        pos = np.empty(len(ok), dtype=np.int32)
        pos[order] = np.arange(len(ok), dtype=np.int32)
        return cls(
            ok=np.ascontiguousarray(ok, dtype=np.uint8),
            w=np.ascontiguousarray(np.where(ok, pp.fit, 0), dtype=np.int32),
            dept=np.ascontiguousarray(pp.dept, dtype=np.int32),
            n_dept=int(pp.dept.max()) + 1 if len(ok) else 1,
            limit=pp.dept_limit if pp.dept_limit is not None else pp.size_max,
            lang=np.ascontiguousarray(pp.lang, dtype=np.uint64),
            pos=pos,
            size_min=pp.size_min,
            size_max=pp.size_max,
        )


@dataclass(frozen=True)
class RootPrice:
    """One root's search: ``most`` a proven upper bound on red(S) over every valid group S whose first
    member (``Tables.pos``) is the root (at least EPS), ``met`` the best red of a group met (or -inf),
    ``groups`` the best groups met with red > EPS, ``nodes`` the search's nodes, ``complete`` whether it
    ended within its budget (``most`` is a proof either way)."""

    most: float
    met: float
    groups: list[tuple[float, tuple[int, ...]]]
    nodes: int
    complete: bool


_P = ctypes.c_void_p


def _library() -> ctypes.CDLL:
    """The kernel, compiled once per source version into the temporary directory."""
    source = KERNEL.read_bytes()
    tag = hashlib.sha256(source).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"peer_cg_kernel_{tag}_{os.getuid()}.so"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(partial), str(KERNEL), "-lm"], check=True)
        partial.replace(path)
    lib = ctypes.CDLL(str(path))
    lib.price_root.restype = ctypes.c_longlong
    lib.price_root.argtypes = [
        *(ctypes.c_int, _P, _P, _P, _P, ctypes.c_int, ctypes.c_int, _P, _P),
        *(ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_double, ctypes.c_double),
        *(ctypes.c_int, _P, _P, _P, _P, _P),
    ]
    return lib


_LIB: list[ctypes.CDLL] = []


def price_root(t: Tables, v: npt.NDArray[np.float64], i: int, budget: int = 10**12, keep: int = 4) -> RootPrice:
    """The kernel's search for root ``i`` at duals ``v``, at most ``budget`` nodes, keeping ``keep`` groups."""
    if not _LIB:
        _LIB.append(_library())
    duals = np.ascontiguousarray(v, dtype=np.float64)
    best, credit, kept = ctypes.c_double(), ctypes.c_double(), ctypes.c_int()
    groups = np.zeros((keep, t.size_max), dtype=np.int32)
    reds = np.zeros(keep)
    nodes = _LIB[0].price_root(
        len(t.ok), t.ok.ctypes.data, t.w.ctypes.data, duals.ctypes.data, t.dept.ctypes.data, t.n_dept, t.limit,
        t.lang.ctypes.data, t.pos.ctypes.data, t.size_min, t.size_max, i, budget, EPS, 0.0, keep,
        ctypes.byref(best), ctypes.byref(credit), ctypes.byref(kept), groups.ctypes.data, reds.ctypes.data,
    )  # fmt: skip
    found = sorted(
        ((float(reds[q]), tuple(sorted(int(x) for x in groups[q] if x >= 0))) for q in range(kept.value)),
        reverse=True,
    )
    return RootPrice(max(EPS, best.value, credit.value), best.value, found, int(nodes), credit.value == -np.inf)
