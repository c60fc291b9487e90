"""Sessions' operator commands.

    python -m services.sessions.cli reencrypt

Re-seals every confidential text (notes, goal and step wording, agenda, boundaries, topics, reasons)
that is not under the current key (``SESSIONS_ENCRYPTION_KEY_ID``) with it. Rotating a key: add the new
key to ``SESSIONS_ENCRYPTION_KEYS`` beside the old one, make it current, restart the service, run this
command, then drop the old key. Safe to run again: rows already under the current key are not touched.
It prints counts per column, never a text.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from runtime.db import create_pool
from services.sessions.adapters.sealed import reencrypt
from services.sessions.app import SessionsSettings


async def run_reencrypt(settings: SessionsSettings) -> dict[str, int]:
    pool = await create_pool(settings.database_url.get_secret_value(), settings.db_schema, min_size=1, max_size=2)
    try:
        return await reencrypt(pool, settings.key_ring())
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sessions service operator commands")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("reencrypt", help="re-seal every stored text under the current key")
    parser.parse_args(argv)
    counts = asyncio.run(run_reencrypt(SessionsSettings()))
    for column, n in counts.items():
        print(f"{column}: {n} re-encrypted")
    print(f"total: {sum(counts.values())} re-encrypted under the current key")
    return 0


if __name__ == "__main__":
    sys.exit(main())
