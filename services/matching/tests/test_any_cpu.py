"""Same input and seed, same groups, on any CPU (``bench.probes.any_cpu``): each small pool is matched in
a child process with every numpy kernel this CPU offers and in one with numpy held to its baseline
kernels, which order equal keys differently; the groups must be the same. On a CPU with nothing beyond
the baseline the two runs would be the same machine: the test says so and skips."""

from __future__ import annotations

import pytest

from bench.probes.any_cpu import compare, extra_kernels


def test_the_same_groups_whatever_kernels_numpy_picks_for_this_cpu() -> None:
    if not extra_kernels():
        pytest.skip("numpy has no kernels beyond its baseline on this CPU: nothing to compare")
    rows = compare("small", ".", 2026)
    assert len(rows) == 8
    assert [name for name, full, base in rows if full != base] == []
    assert all(not full.startswith("violations") for _, full, _ in rows)
