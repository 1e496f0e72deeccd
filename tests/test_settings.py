"""Settings come from CAREHUB_* variables; a bad value stops start-up with one line naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CAREHUB_DATABASE_URL", "mysql://localhost/db", "unsupported driver"),
        ("CAREHUB_DATABASE_URL", "::::", "not a database URL"),
        ("CAREHUB_REDIS_URL", "http://localhost", "must start with redis://"),
        ("CAREHUB_JWT_TTL_SECONDS", "ten", "valid integer"),
        ("CAREHUB_JWT_TTL_SECONDS", "5", "greater than or equal to 60"),
        ("CAREHUB_JWT_KEYS", "not-json", "JSON object"),
        ("CAREHUB_JWT_KEYS", '{"k1": "short"}', "shorter than 32 bytes"),
        ("CAREHUB_JWT_KEYS", '{"k1": "' + "x" * 40 + '"}', "'local' is not a key id"),
        ("CAREHUB_PORT", "70000", "less than or equal to 65535"),
        ("CAREHUB_ENV", "staging", "CAREHUB_ENV"),
        ("CAREHUB_FORWARDED_ALLOW_IPS", "10.0.0.0/8, proxy.internal", "'proxy.internal' is not an IP address"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    text = str(raised.value)
    assert "\n" not in text
    assert message in text
    assert text.split(":")[0].startswith("CAREHUB_")


def test_production_needs_configured_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREHUB_ENV", "production")
    with pytest.raises(SettingsError, match="CAREHUB_JWT_KEYS: at least one key is needed"):
        load_settings()
    monkeypatch.setenv("CAREHUB_JWT_KEYS", '{"2026-11": "' + "s" * 40 + '"}')
    monkeypatch.setenv("CAREHUB_JWT_ACTIVE_KID", "2026-11")
    assert load_settings().env == "production"


def test_a_local_key_is_made_once_and_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAREHUB_DATA_DIR", str(tmp_path))
    first = load_settings()
    second = load_settings()
    assert first.jwt_keys == second.jwt_keys and len(first.jwt_keys["local"]) >= 32
    key_file = tmp_path / "jwt-signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    other = tmp_path / "other"
    monkeypatch.setenv("CAREHUB_DATA_DIR", str(other))
    assert load_settings().jwt_keys != first.jwt_keys, "each installation has its own key"


@pytest.mark.slow
def test_the_command_stops_with_one_clear_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "db", "upgrade"],
        env={"CAREHUB_JWT_TTL_SECONDS": "ten", "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "carehub: configuration error: CAREHUB_JWT_TTL_SECONDS: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]


def test_trusted_proxies_are_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREHUB_FORWARDED_ALLOW_IPS", " 10.0.0.0/8, 127.0.0.1 ")
    assert load_settings().forwarded_allow_ips == "10.0.0.0/8,127.0.0.1"
    monkeypatch.setenv("CAREHUB_FORWARDED_ALLOW_IPS", "")
    assert load_settings().forwarded_allow_ips is None


def test_attachments_are_kept_under_the_data_dir_unless_told(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from core.messaging.blobs import LocalBlobStore, blob_store

    monkeypatch.delenv("CAREHUB_BLOB_DIR", raising=False)
    monkeypatch.setenv("CAREHUB_DATA_DIR", str(tmp_path))
    store = blob_store(load_settings())
    assert isinstance(store, LocalBlobStore) and store.root == tmp_path / "blobs"
    monkeypatch.setenv("CAREHUB_BLOB_DIR", str(tmp_path / "files"))
    store = blob_store(load_settings())
    assert isinstance(store, LocalBlobStore) and store.root == tmp_path / "files"
