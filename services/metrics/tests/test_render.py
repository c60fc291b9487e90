"""The page and the funnel without the stack: hostile names are escaped, funnel steps never differ from
a visible step by fewer than five people."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from services.metrics.dashboard import render
from services.metrics.domain.facts import Facts, ProgramFact
from services.metrics.domain.report import WindowName
from services.metrics.domain.suppression import MIN_PEOPLE
from services.metrics.domain.trends import load_histogram, suppress_steps, weekly
from services.metrics.handlers import DashboardData, Loaded, Scope, _report
from services.metrics.tests.scenario import DAY, T0


@settings(deadline=None)  # timing on a shared machine is not what these properties test
@given(st.lists(st.integers(0, 60), min_size=1, max_size=6))
def test_funnel_steps_hide_small_differences(counts: list[int]) -> None:
    steps = suppress_steps({f"s{i}": n for i, n in enumerate(counts)})
    visible = [f.n for f in steps.values() if not f.suppressed]
    assert all(n == 0 or n >= MIN_PEOPLE for n in visible)
    assert all(not (0 < a - b < MIN_PEOPLE) for a, b in itertools.pairwise(visible))


def test_names_are_escaped_on_the_page() -> None:
    hostile = "<script>alert(1)</script>"
    program = ProgramFact("p1", hostile, "one_to_one", 14, "open", T0.date(), T0)
    facts = Facts(programs=[program])
    loaded = Loaded(facts, {}, [])
    report = _report(loaded, Scope(), WindowName.PROGRAM_TO_DATE, T0 + DAY)
    data = DashboardData(
        report, [("p1", hostile)], suppress_steps({"enrolled": 0}), weekly(facts, T0 + DAY), load_histogram({}), []
    )
    page = render(data, hostile)
    assert hostile not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
