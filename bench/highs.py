"""One way to open a HiGHS instance in the benchmark: quiet, on one thread.

HiGHS keeps one global scheduler per process, sized by the first instance that runs; an instance that
asks for another thread count then fails to run (model status kNotset). The benchmark's MILP and LPs
(``facilitated_fit_exact``, ``facilitated_cg``, ``peer_cg``) may run in one process (``matching_bench``
with ``--facil-exact``, ``--facil-cg`` and ``--peer-cg``, or one test session), so they all ask for one
thread (the exact MILP asked for two before 2026-12-02; its earlier figures in docs/matching.md were
measured so)."""

from __future__ import annotations

import highspy


def quiet_highs() -> highspy.Highs:
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    return h
