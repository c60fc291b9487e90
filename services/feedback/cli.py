"""Operations on the feedback service's own data.

    python -m services.feedback.cli reencrypt

``reencrypt`` moves every stored comment to the current key, after a rotation: put the new key in
``FEEDBACK_ENCRYPTION_KEYS`` beside the old one, make it ``FEEDBACK_ENCRYPTION_KEY_ID``, restart the
service (new comments use it), run this, then drop the old key. It reads the service's own settings
(``FEEDBACK_DATABASE_URL``, ``FEEDBACK_DB_SCHEMA``...), works in batches, and may run while the service
does, or twice at once; it prints how many comments it moved, never their text.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from runtime.db import create_pool
from services.feedback.app import FeedbackSettings
from services.feedback.handlers import reencrypt


async def reencrypt_comments(settings: FeedbackSettings) -> int:
    pool = await create_pool(settings.database_url.get_secret_value(), settings.db_schema, min_size=1, max_size=2)
    try:
        return await reencrypt(pool, settings.key_ring())
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.feedback.cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("reencrypt", help="re-encrypt every comment under the current key")
    parser.parse_args(argv)
    settings = FeedbackSettings()
    moved = asyncio.run(reencrypt_comments(settings))
    print(f"{moved} comment(s) re-encrypted under key {settings.encryption_key_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
