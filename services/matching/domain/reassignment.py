"""Facilitated groups, fit level: the reassignment problem between open groups, and its options.

Who may join which open group, at what fit, is held once, as arrays (``Arcs``): large pools build
them with array operations, and the flow (``fit_polish``) reads them so; 3 million options at 50,000
mentees took 10 s of Python to put into dicts and read back out. The local search (``fit_moves``)
reads one mentee's options at a time, millions of times: for it ``Arcs.rows`` turns a mentee's arcs
into a dict when first asked for (the only place dicts are made from the arrays), so a repair that
moves a few mentees of 50,000 pays for those few.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from services.matching.domain.rules import IntArray

Slot = tuple[int, int]
"""An open group: (mentor position, the mentor's group number)."""


@dataclass(frozen=True)
class Arcs:
    """Every (mentee, open group) option with its fit: arc ``a`` is ``people[who[a]]`` in
    ``slots[where[a]]`` at fit ``fit[a]``. ``people`` and ``slots`` are sorted, and the arcs by mentee,
    then group, each option once: the flow adds them in this order, and a lookup is a binary search."""

    people: list[str]
    slots: list[Slot]
    who: IntArray
    where: IntArray
    fit: IntArray

    @classmethod
    def of(cls, people: list[str], options: Mapping[str, list[Slot]], fit: Mapping[tuple[str, Slot], int]) -> Arcs:
        """From per-mentee options and per-option fits (small pools and tests); an option without a fit has 0."""
        ordered = {pid: sorted(options[pid]) for pid in people}
        slots = sorted({s for opts in ordered.values() for s in opts})
        pos = {s: c for c, s in enumerate(slots)}
        who = [r for r, pid in enumerate(people) for _ in ordered[pid]]
        where = [pos[s] for pid in people for s in ordered[pid]]
        fits = [fit.get((pid, s), 0) for pid in people for s in ordered[pid]]
        return cls(people, slots, *(np.array(x, dtype=np.int64) for x in (who, where, fits)))

    @functools.cached_property
    def starts(self) -> IntArray:
        """Arcs of ``people[r]``: ``starts[r]`` to ``starts[r + 1]`` (``who`` is sorted)."""
        out: IntArray = np.searchsorted(self.who, np.arange(len(self.people) + 1, dtype=np.int64)).astype(np.int64)
        return out

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {pid: r for r, pid in enumerate(self.people)}

    @functools.cached_property
    def slot_index(self) -> dict[Slot, int]:
        return {s: c for c, s in enumerate(self.slots)}

    @functools.cached_property
    def codes(self) -> IntArray:
        """Each arc as one sortable number (mentee, then group): the key of ``fits``' binary search."""
        codes: IntArray = self.who * max(1, len(self.slots)) + self.where
        assert bool(np.all(codes[1:] > codes[:-1])), "arcs sorted by mentee, then group, each once"
        return codes

    @functools.cached_property
    def rows(self) -> OptionRows:
        """Each mentee's options as a dict, made when first asked for (see ``OptionRows``)."""
        return OptionRows(self)

    def options(self, pid: str) -> list[Slot]:
        """The open groups ``pid`` may join, in arc order."""
        return list(self.rows[pid])

    def fits(self, pairs: list[tuple[str, Slot]]) -> list[int | None]:
        """The fit of each (mentee, group) pair (None: not an option), in one array lookup."""
        width = max(1, len(self.slots))
        r = np.array([self.index.get(pid, -1) for pid, _ in pairs], dtype=np.int64)
        c = np.array([self.slot_index.get(s, -1) for _, s in pairs], dtype=np.int64)
        key = r * width + c
        codes = self.codes
        if not len(codes):
            return [None] * len(pairs)
        i = np.minimum(np.searchsorted(codes, key), len(codes) - 1)
        found = (r >= 0) & (c >= 0) & (codes[i] == key)
        return [int(v) if ok else None for v, ok in zip(self.fit[i].tolist(), found.tolist(), strict=True)]


class OptionRows(dict[str, dict[Slot, int]]):
    """Mentee -> {open group: fit} over its options, in arc order, each made from the arrays when first
    asked for: the local search's lookups are dict reads, and a repair that looks at a few mentees does
    not pay for all 50,000 (their dicts cost 0.7 s). A mentee without arcs has no options."""

    def __init__(self, arcs: Arcs) -> None:
        super().__init__()
        self.arcs = arcs

    def __missing__(self, pid: str) -> dict[Slot, int]:
        a = self.arcs
        r = a.index.get(pid)
        if r is None:
            return {}
        lo, hi = int(a.starts[r]), int(a.starts[r + 1])
        slots = a.slots
        out = self[pid] = dict(zip([slots[c] for c in a.where[lo:hi].tolist()], a.fit[lo:hi].tolist(), strict=True))
        return out


@dataclass(frozen=True)
class Reassignment:
    """The reassignment problem: open groups with their mentor's department, who may join which."""

    assign: Mapping[str, Slot]
    """Each placed mentee's current group (a feasible solution)."""
    arcs: Arcs
    """Open groups each placed mentee may join (its candidate mentors' open slots), with their fits;
    ``arcs.people`` is every placed mentee, sorted."""
    dept: Mapping[str, str]
    mentor_dept: Mapping[Slot, str]
    apart: frozenset[frozenset[str]]
    size_min: int
    size_max: int
    max_same_department: int | None
    frozen: frozenset[str] = frozenset()
    """Mentees that stay where they are (locks)."""
    extra: frozenset[Slot] = frozenset()
    """Open groups with nobody in them yet: the flow fills each to at least its minimum (or, if it
    cannot, the reassignment keeps the groups of ``assign``)."""
    closing: frozenset[Slot] = frozenset()
    """Open groups of ``assign`` the flow may leave empty: it fills the others and ``extra`` instead (the
    groups a fit-optimal flow chose, ``facilitated_fit.flow_chosen``)."""
    may_join: Callable[[str, Slot], int | None] | None = None
    """Fit of a mentee in any open group it is eligible for (None: not eligible), beyond its options: a
    repair may swap someone into a group outside their options to take a rule-breaker's place."""
    optional: tuple[str, ...] = ()
    """People left out, in lottery order, whom the flow places where it can (placing more comes first,
    then the earlier drawn, then fit: ``fit_polish._flow``); the placed stay placed."""

    def __post_init__(self) -> None:
        everyone = sorted({*self.assign, *self.optional})
        assert self.arcs.people == everyone, "the arcs are those of the placed and optional mentees"

    def option_fit(self, pid: str, s: Slot) -> int:
        """``pid``'s fit in ``s`` when ``s`` is among its options, else 0 (the rule-breaker's order)."""
        return self.arcs.rows[pid].get(s, 0)

    def arc_fit(self, pid: str, s: Slot) -> int:
        """``pid``'s fit in ``s``: among its options, or any group it is eligible for (``may_join``)."""
        f = self.arcs.rows[pid].get(s)
        if f is None and self.may_join is not None:
            f = self.may_join(pid, s)
        return f or 0

    def total(self, assign: Mapping[str, Slot]) -> int:
        """The fit of an assignment: one array lookup for the options, ``may_join`` for the rest."""
        pairs = list(assign.items())
        found = self.arcs.fits(pairs)
        return sum(f if f is not None else self.arc_fit(*pair) for f, pair in zip(found, pairs, strict=True))

    def broken(self, assign: Mapping[str, Slot]) -> list[tuple[Slot, list[str]]]:
        """Per group, the members who break a member-member rule there (sorted, deterministic)."""
        members: dict[Slot, list[str]] = defaultdict(list)
        for pid, s in sorted(assign.items()):
            members[s].append(pid)
        out = []
        for s, ids in sorted(members.items()):
            bad: set[str] = set()
            for i, a in enumerate(ids):
                for b in ids[i + 1 :]:
                    if frozenset((a, b)) in self.apart:  # the lower-fit one leaves (never a locked one)
                        bad.add(min((a, b), key=lambda p: (p in self.frozen, self.option_fit(p, s), p)))
            if self.max_same_department is not None:
                by_dept: dict[str, list[str]] = defaultdict(list)
                for pid in ids:
                    by_dept[self.dept[pid]].append(pid)
                for d, pids in by_dept.items():
                    room = self.max_same_department - (1 if d == self.mentor_dept[s] else 0)
                    if len(pids) > room:
                        pids.sort(key=lambda p: (p not in self.frozen, -self.option_fit(p, s), p))  # locked ones stay
                        bad.update(p for p in pids[max(0, room) :] if p not in self.frozen)
            bad -= self.frozen
            if bad:
                out.append((s, sorted(bad)))
        return out
