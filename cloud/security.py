"""Passwords, user access tokens and gateway tokens.

- Passwords: scrypt (stdlib ``hashlib.scrypt``, n=2**14, r=8, p=1) with a random salt, stored as
  ``scrypt$n$r$p$salt$hash``; verified in constant time.
- Access tokens: ``<payload>.<signature>``, the payload a base64url JSON of user id, expiry
  and a nonce, the signature HMAC-SHA256 with the settings' secret. Stateless, so any worker
  verifies them; a disabled user is refused because the user row is read on every request.
- Gateway tokens: random, shown once; only their SHA-256 is stored, so a leaked database does
  not leak usable tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
GATEWAY_TOKEN_PREFIX = "ghg_"


class TokenError(ValueError):
    """A token is malformed, forged or expired."""


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``."""
    if not password:
        raise ValueError("empty password")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time compare)."""
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    expires_at: float


def issue_access_token(key: bytes, user_id: int, expires_at: float) -> str:
    """A signed token for ``user_id`` valid until ``expires_at`` (epoch seconds)."""
    payload = _b64(
        json.dumps({"u": user_id, "e": expires_at, "n": secrets.token_hex(4)}).encode()
    )
    return f"{payload}.{_sign(key, payload)}"


def verify_access_token(key: bytes, token: str, now: float) -> AccessClaims:
    """The claims of a valid, unexpired token; raise :class:`TokenError` otherwise."""
    payload, _, signature = token.partition(".")
    if not payload or not signature or not hmac.compare_digest(_sign(key, payload), signature):
        raise TokenError("bad token signature")
    try:
        data = json.loads(_unb64(payload))
        claims = AccessClaims(user_id=int(data["u"]), expires_at=float(data["e"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenError("malformed token") from exc
    if claims.expires_at <= now:
        raise TokenError("token expired")
    return claims


def new_gateway_token() -> str:
    """A fresh random gateway token (show it once, store :func:`gateway_token_hash`)."""
    return GATEWAY_TOKEN_PREFIX + secrets.token_urlsafe(32)


def gateway_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_body(key: bytes, body: bytes, timestamp: int) -> str:
    """Webhook signature: hex HMAC-SHA256 over ``"{timestamp}." + body``."""
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
