"""Encryption at rest for confidential text: session notes, goal wording, free-text feedback.

The guarantee: a confidential text is stored only as AES-256-GCM ciphertext (the ``cryptography``
package), never as plaintext, and can be read back only by code holding the key.

- Each ciphertext is stored with the id of the key that sealed it (``Sealed.key_id``), so keys rotate:
  new rows use the current key, older rows stay readable while their key is still configured, and a
  service's re-encryption command moves them to the current key (:meth:`KeyRing.reseal`).
- A fresh 96-bit random nonce per ciphertext, as GCM requires; it is stored in front of the ciphertext.
- The caller passes a ``context`` (for example ``"note:<note id>"``) as GCM associated data: it is not
  stored in the blob but must match on reading, so a ciphertext copied into another row does not open.
- Errors name the key id, never the text: they may reach a log line or an error response.

Keys come from settings as one ``SecretStr``: ``"<key id>:<base64 of 32 bytes>,<key id>:<...>"`` plus the
id of the current key. ``python -m runtime.crypto new-key`` prints a fresh key in that form.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings

from runtime.logging import SafeMessage

NONCE_BYTES = 12
KEY_BYTES = 32

DEV_KEYS = "dev-1:ZGV2LW9ubHkta2V5LWNoYW5nZS1tZS0zMi1ieXRlcyE="
"""A development key for the local stack only (its bytes spell that out); any deployment sets its own."""


class CryptoError(SafeMessage, ValueError):
    """A ciphertext that cannot be opened, or a key ring that cannot be built; names key ids only."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    blob: bytes
    """nonce (12 bytes) followed by the GCM ciphertext and tag"""


class KeyRing:
    """The keys a service may read with, and the one it writes with."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise CryptoError(f"the current key id {current!r} is not among the configured keys {sorted(keys)}")
        for key_id, key in keys.items():
            if len(key) != KEY_BYTES:
                raise CryptoError(f"key {key_id!r} must be {KEY_BYTES} bytes, got {len(key)}")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = current

    @classmethod
    def parse(cls, spec: str, current: str) -> KeyRing:
        keys: dict[str, bytes] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key_id, sep, encoded = item.partition(":")
            if not sep or not key_id:
                raise CryptoError("each key must be written '<key id>:<base64 key>'")
            try:
                keys[key_id.strip()] = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error as exc:
                raise CryptoError(f"key {key_id!r} is not valid base64") from exc
        return cls(keys, current)

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._ciphers)

    def seal(self, plaintext: str, *, context: str) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        blob = self._ciphers[self.current].encrypt(nonce, plaintext.encode(), context.encode())
        return Sealed(self.current, nonce + blob)

    def open(self, sealed: Sealed, *, context: str) -> str:
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise CryptoError(f"no key {sealed.key_id!r} is configured to open this text")
        nonce, blob = sealed.blob[:NONCE_BYTES], sealed.blob[NONCE_BYTES:]
        try:
            return cipher.decrypt(nonce, blob, context.encode()).decode()
        except InvalidTag as exc:
            raise CryptoError(f"a text sealed with key {sealed.key_id!r} failed authentication") from exc

    def reseal(self, sealed: Sealed, *, context: str) -> Sealed | None:
        """The same text under the current key, or None when it already is (nothing to rewrite)."""
        if sealed.key_id == self.current:
            return None
        return self.seal(self.open(sealed, context=context), context=context)


class EncryptionSettings(BaseSettings):
    """Mixed into the settings of a service that stores confidential text."""

    encryption_keys: SecretStr = Field(
        default=SecretStr(DEV_KEYS), description="'<key id>:<base64 32-byte key>,...': every key that may be read"
    )
    encryption_key_id: str = Field(default="dev-1", description="the key new texts are sealed with")

    @model_validator(mode="after")
    def _keys_parse(self) -> EncryptionSettings:
        self.key_ring()  # fail at start-up, with a message naming key ids only
        return self

    def key_ring(self) -> KeyRing:
        return KeyRing.parse(self.encryption_keys.get_secret_value(), self.encryption_key_id)


def new_key(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Keys for encryption at rest")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new-key", help="print a fresh key as '<key id>:<base64>'")
    new.add_argument("key_id")
    args = parser.parse_args()
    if args.command == "new-key":
        print(new_key(args.key_id))


if __name__ == "__main__":
    main()
