"""Encryption at rest: what a reader of the database sees, and what rotation keeps readable."""

from __future__ import annotations

import pytest

from runtime.crypto import CryptoError, EncryptionSettings, KeyRing, Sealed, new_key

MARKER = "confidential-marker-8c1f: my manager undermines me"


def ring(*key_ids: str, current: str) -> KeyRing:
    return KeyRing.parse(",".join(new_key(k) for k in key_ids), current)


def test_the_stored_bytes_do_not_contain_the_text_and_open_back_to_it() -> None:
    keys = ring("k1", current="k1")
    sealed = keys.seal(MARKER, context="note:1")
    assert MARKER.encode() not in sealed.blob
    assert sealed.key_id == "k1"
    assert keys.open(sealed, context="note:1") == MARKER


def test_the_same_text_sealed_twice_differs() -> None:
    keys = ring("k1", current="k1")
    assert keys.seal(MARKER, context="note:1").blob != keys.seal(MARKER, context="note:1").blob


def test_a_ciphertext_moved_to_another_row_does_not_open() -> None:
    keys = ring("k1", current="k1")
    sealed = keys.seal(MARKER, context="note:1")
    with pytest.raises(CryptoError) as raised:
        keys.open(sealed, context="note:2")
    assert MARKER not in str(raised.value)


def test_after_rotation_old_texts_open_and_reseal_under_the_new_key() -> None:
    old_spec, new_spec = new_key("k1"), new_key("k2")
    before = KeyRing.parse(old_spec, "k1")
    sealed = before.seal(MARKER, context="goal:9")
    after = KeyRing.parse(f"{old_spec},{new_spec}", "k2")
    assert after.open(sealed, context="goal:9") == MARKER
    moved = after.reseal(sealed, context="goal:9")
    assert moved is not None and moved.key_id == "k2"
    assert KeyRing.parse(new_spec, "k2").open(moved, context="goal:9") == MARKER
    assert after.reseal(moved, context="goal:9") is None


def test_a_text_whose_key_was_removed_names_the_key_only() -> None:
    sealed = ring("k1", current="k1").seal(MARKER, context="c")
    with pytest.raises(CryptoError, match="'k1'"):
        ring("k2", current="k2").open(Sealed("k1", sealed.blob), context="c")


@pytest.mark.parametrize(
    ("keys", "current", "problem"),
    [
        ("k1:AAAA", "k1", "32 bytes"),
        ("k1:not base64!", "k1", "base64"),
        (new_key("k1"), "k9", "'k9'"),
        ("k1", "k1", "<key id>"),
    ],
)
def test_bad_key_settings_fail_at_start_up(keys: str, current: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        EncryptionSettings(encryption_keys=keys, encryption_key_id=current)
