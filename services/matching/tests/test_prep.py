"""The array versions of per-person work agree with the per-person originals (brute force)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.policy import Form
from services.matching.domain import MatchingInput
from services.matching.domain.common import Prepared
from services.matching.domain.components import shared_column_labels
from services.matching.domain.facilitated_prep import eligibility, sharing_matrix
from services.matching.domain.group_greedy import _first_option
from services.matching.domain.rules import PairRules, Pool
from services.matching.tests.test_properties import as_form, small_pools


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_pools(max_mentors=4, max_mentees=6))
def test_block_eligibility_and_fit_equal_the_per_person_checks(inp: MatchingInput) -> None:
    prep = Prepared.of(inp, 1)
    rules = PairRules(Pool.encode(prep.people), inp.policy, np.array(prep.mentors, dtype=np.int64))
    rows = np.array(prep.seekers, dtype=np.int64)
    eligible, fit = rules.eligible_rows(rows), rules.fit_rows(rows)
    for r, i in enumerate(prep.seekers):
        assert (eligible[r] == rules.eligible(i)).all()
        assert (fit[r] == rules.fit(i)).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_pools(max_mentors=4, max_mentees=6))
def test_the_sharing_matrix_equals_pairwise_checks(inp: MatchingInput) -> None:
    grouped = as_form(inp, Form.FACILITATED_GROUP, group_members_min=1, group_members_max=3)
    prep = Prepared.of(grouped, 1)
    rules = PairRules(Pool.encode(prep.people), grouped.policy, np.array(prep.mentors, dtype=np.int64))
    free = np.array([prep.free(m) for m in prep.mentor_ids], dtype=np.int64)
    el = eligibility(prep, rules, free)
    ids = el.seekers
    placed, left = ids[::2], ids[1::2]
    shared = sharing_matrix(el, placed, left)
    for (p, a), (q, b) in itertools.product(enumerate(placed), enumerate(left)):
        assert shared[p, q] == bool((el.room(a) & el.room(b)).any())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=1, max_size=9))
def test_component_labels_equal_a_graph_search(rows: list[list[bool]]) -> None:
    matrix = np.array(rows, dtype=bool)
    label = shared_column_labels(matrix)
    n = len(rows)
    for a, b in itertools.combinations(range(n), 2):  # linked rows share a label
        if (matrix[a] & matrix[b]).any():
            assert label[a] == label[b]
    for a in range(n):  # the label is the least row reachable
        reach, frontier = {a}, [a]
        while frontier:
            x = frontier.pop()
            for y in range(n):
                if y not in reach and (matrix[x] & matrix[y]).any():
                    reach.add(y)
                    frontier.append(y)
        assert label[a] == min(reach)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(1, 4)), min_size=1, max_size=8))
def test_the_greedy_first_option_is_the_first_of_the_full_order(options: list[tuple[int, int, int]]) -> None:
    m = 10
    pos = np.arange(len(options), dtype=np.int64)
    used = np.array([u for u, _, _ in options], dtype=np.float64)
    cap = np.array([c for _, _, c in options], dtype=np.float64)
    fit = np.zeros(m, dtype=np.int64)
    fit[: len(options)] = [f for _, f, _ in options]
    tiebreak = np.arange(m, dtype=np.int64)[::-1].copy()
    ratio = (used + 1) / cap
    full = pos[np.lexsort((tiebreak[pos], -fit[pos], ratio))]
    assert _first_option(pos, ratio, fit, tiebreak) == int(full[0])
