"""The placement lottery: who gets a place when not everyone can, reproducible by an auditor.

rank(p) = position of p when participant ids are sorted by ``sha256(f"{seed}:{participant_id}")``
(hex digest, ascending). It depends on the published seed and the id only: never on enrolment order,
name, or the order participants are listed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def lottery_key(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def lottery_order(participant_ids: Iterable[str], seed: int) -> list[str]:
    """Participant ids in lottery order: index 0 is drawn first."""
    return sorted(set(participant_ids), key=lambda pid: lottery_key(seed, pid))


def lottery_ranks(participant_ids: Iterable[str], seed: int) -> dict[str, int]:
    return {pid: rank for rank, pid in enumerate(lottery_order(participant_ids, seed))}
