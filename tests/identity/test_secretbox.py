"""SecretBox: key file creation and mode, round trip, wrong key, derived keys; split_secrets."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from batchpoint.exceptions import BatchpointError, ValidationError
from batchpoint.identity.secrets import (
    SECRET_FIELDS,
    SecretBox,
    is_secret_field,
    join_secrets,
    split_secrets,
)

posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
def test_load_or_create_makes_a_0600_key_file(tmp_path: Path) -> None:
    path = tmp_path / "home" / "server.key"
    box = SecretBox.load_or_create(path)
    assert path.exists() and _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    Fernet(path.read_bytes().strip())  # a valid Fernet key
    assert box.path == path
    assert [p.name for p in path.parent.iterdir()] == ["server.key"]  # temp file cleaned up


@posix_only
def test_mode_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        SecretBox.load_or_create(tmp_path / "k")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k") == 0o600


def test_second_load_uses_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    sealed = SecretBox.load_or_create(path).encrypt({"account_key": "abc"})
    again = SecretBox.load_or_create(path)
    assert again.decrypt(sealed) == {"account_key": "abc"}
    assert SecretBox.load(path).server_key_bytes() == again.server_key_bytes()


def test_concurrent_creation_agrees_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    boxes: list[SecretBox] = []
    threads = [threading.Thread(target=lambda: boxes.append(SecretBox.load_or_create(path)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({b.server_key_bytes() for b in boxes}) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["server.key"]


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660, 0o700 | 0o004])
def test_group_or_world_accessible_key_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "server.key"
    key = Fernet.generate_key()
    path.write_bytes(key)
    path.chmod(mode)
    with pytest.raises(BatchpointError, match=f"chmod 600 {path}") as info:
        SecretBox.load_or_create(path)
    assert key.decode() not in info.value.message
    assert _mode(path) == mode  # refused, not silently changed
    path.chmod(0o600)
    SecretBox.load_or_create(path)
    path.chmod(0o400)
    SecretBox.load(path)


@posix_only
def test_invalid_key_file(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    path.write_text("not-a-key-but-secretish")
    path.chmod(0o600)
    with pytest.raises(BatchpointError, match="not a valid Fernet key") as info:
        SecretBox.load(path)
    assert "secretish" not in info.value.message
    with pytest.raises(BatchpointError, match="cannot read the server key file"):
        SecretBox.load(tmp_path / "missing.key")


def test_round_trip_and_ciphertext_hides_plaintext() -> None:
    box = SecretBox(Fernet.generate_key())
    data = {"client_secret": "s3cr3t-value", "n": 1, "nested": {"a": [1, "b"]}, "u": "é"}
    sealed = box.encrypt(data)
    assert isinstance(sealed, str) and "s3cr3t" not in sealed
    assert box.decrypt(sealed) == data
    assert box.encrypt(data) != sealed  # fresh IV each time


def test_wrong_key_and_garbage_never_echo_ciphertext(tmp_path: Path) -> None:
    sealed = SecretBox(Fernet.generate_key()).encrypt({"account_key": "k"})
    other = SecretBox(Fernet.generate_key(), path=tmp_path / "server.key")
    for bad in (sealed, sealed[:-5] + "AAAAA", "zq-not-a-token", "", "é"):
        with pytest.raises(BatchpointError, match="cannot decrypt a stored secret") as info:
            other.decrypt(bad)
        assert not bad or bad not in info.value.message
        assert str(tmp_path / "server.key") in info.value.message


def test_decrypt_non_dict_and_encrypt_bad_values() -> None:
    key = Fernet.generate_key()
    box = SecretBox(key)
    with pytest.raises(BatchpointError, match="not a dict"):
        box.decrypt(Fernet(key).encrypt(b"[1, 2]").decode())
    with pytest.raises(ValidationError, match="JSON values") as info:
        box.encrypt({"password": object()})
    assert "object at" not in info.value.message
    with pytest.raises(ValidationError):
        box.encrypt(["a"])  # type: ignore[arg-type]


def test_derived_keys_are_distinct_stable_and_not_the_fernet_key() -> None:
    key = Fernet.generate_key()
    box = SecretBox(key)
    pepper, signing = box.server_key_bytes(), box.token_signing_key()
    assert len(pepper) == 32 and len(signing) == 32 and pepper != signing
    raw = __import__("base64").urlsafe_b64decode(key)
    assert raw not in (pepper, signing) and key not in (pepper, signing)
    assert SecretBox(key).server_key_bytes() == pepper
    assert SecretBox(Fernet.generate_key()).server_key_bytes() != pepper
    assert box.derive_key("x", length=16) != box.derive_key("y", length=16)
    with pytest.raises(ValueError):
        box.derive_key("")


def test_repr_hides_key() -> None:
    key = Fernet.generate_key()
    assert key.decode() not in repr(SecretBox(key))
    with pytest.raises(BatchpointError, match="not a valid Fernet key"):
        SecretBox(b"short")


@pytest.mark.parametrize("name", sorted(SECRET_FIELDS) + [
    "Account_Key", "aws_session_token", "private_key", "client_secret_value", "sas", "PASSWORD",
])
def test_secret_field_names(name: str) -> None:
    assert is_secret_field(name)


@pytest.mark.parametrize("name", [
    "kind", "tenant_id", "client_id", "account_name", "authority_url", "resource_url",
    "aws_access_key_id", "access_key_id", "endpoint", "container_name", "profile",
])
def test_public_field_names(name: str) -> None:
    assert not is_secret_field(name)


def test_split_and_join() -> None:
    creds = {"tenant_id": "t", "client_id": "c", "client_secret": "s", "authority_url": "u",
             "extra": {"x": 1}}
    public, secret = split_secrets(creds)
    assert public == {"tenant_id": "t", "client_id": "c", "authority_url": "u"}
    assert secret == {"client_secret": "s", "extra": {"x": 1}}
    assert join_secrets(public, secret) == creds
    assert split_secrets({}) == ({}, {})
    assert split_secrets({"account_key": "k"}) == ({}, {"account_key": "k"})
