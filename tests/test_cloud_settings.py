"""Settings from arguments and environment; passwords and tokens."""

from __future__ import annotations

import pytest

from cloud.security import (
    TokenError,
    hash_password,
    issue_access_token,
    verify_access_token,
    verify_password,
)
from cloud.settings import Settings

KEY = b"k" * 32


@pytest.mark.parametrize("secret", ["", "changeme", "secret", "short-secret"])
def test_weak_or_default_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="secret_key"):
        Settings(secret_key=secret)


def test_dev_mode_runs_without_a_secret() -> None:
    settings = Settings(dev_mode=True)
    assert settings.signing_key


def test_environment_fills_what_arguments_do_not_give(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEHOUSE_SECRET_KEY", "an-environment-secret-of-length")
    monkeypatch.setenv("GATEHOUSE_DATABASE_URL", "sqlite:////tmp/env.db")
    monkeypatch.setenv("GATEHOUSE_ESCALATION_ROLES", "dispatcher, owner")
    monkeypatch.setenv("GATEHOUSE_REWORK_WINDOW", "3d")
    settings = Settings(database_url="sqlite:////tmp/arg.db")
    assert settings.database_url == "sqlite:////tmp/arg.db"
    assert settings.secret_key == "an-environment-secret-of-length"
    assert settings.escalation_roles == ("dispatcher", "owner")
    assert settings.rework_window == 3 * 86400


def test_passwords_are_salted_scrypt_hashes() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("scrypt$") and first != second
    assert verify_password("correct horse", first)
    assert not verify_password("wrong horse", first)
    assert not verify_password("correct horse", "garbage")


def test_access_tokens_are_signed_and_expire() -> None:
    token = issue_access_token(KEY, 7, expires_at=1000.0)
    assert verify_access_token(KEY, token, now=999.0).user_id == 7
    with pytest.raises(TokenError, match="expired"):
        verify_access_token(KEY, token, now=1000.0)
    with pytest.raises(TokenError, match="signature"):
        verify_access_token(b"other" * 8, token, now=1.0)
    payload, _, sig = token.partition(".")
    with pytest.raises(TokenError):
        verify_access_token(KEY, payload[:-2] + "xx." + sig, now=1.0)
    with pytest.raises(TokenError):
        verify_access_token(KEY, "no-dot-at-all", now=1.0)
