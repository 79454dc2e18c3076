"""Shopper privacy: the one place a shopper id becomes the pseudonym that is stored."""

from __future__ import annotations

import hashlib
import hmac

from shopsearch.errors import SettingsError


def pseudonym(user_id: str, salt: str) -> str:
    """The pseudonymous key of a shopper: HMAC-SHA256(salt, user_id), first 32 hex characters.

    Profiles and stored events are keyed by this; raw shopper ids are never stored. Without the
    salt (a setting) the key cannot be recomputed from a guessed id, and a new salt unlinks all
    history.

    >>> pseudonym("u-1", "s") == pseudonym("u-1", "s") != pseudonym("u-1", "t")
    True
    >>> len(pseudonym("u-1", "s"))
    32
    """
    if not salt:
        raise SettingsError("no pseudonym salt: set SHOPSEARCH_PSEUDONYM_SALT, or run `shopsearch secrets init`")
    return hmac.new(salt.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:32]


def event_token(who: str, salt: str, expires_at: int) -> str:
    """A token proving that events for the pseudonymous shopper ``who`` come from their session.

    The proxy hands it out with each search and recommendation for a shopper and asks for it back
    with their events; it holds the pseudonym (never the raw id), an expiry (epoch seconds) and an
    HMAC keyed by the salt, so nobody without the salt can make one for another shopper.

    >>> t = event_token("p1", "salt", 2_000_000_000)
    >>> token_shopper(t, "salt", now=1_900_000_000), token_shopper(t, "other", now=1_900_000_000)
    ('p1', None)
    >>> token_shopper(t, "salt", now=2_000_000_001) is None  # expired
    True
    """
    body = f"{who}.{int(expires_at)}"
    return f"{body}.{_token_mac(body, salt)}"


def token_shopper(token: str, salt: str, now: float) -> str | None:
    """The pseudonym a valid, unexpired token proves, or None."""
    who, _, rest = (token or "").partition(".")
    expires, _, mac = rest.partition(".")
    if not who or not expires.isdigit() or not mac or int(expires) < now:
        return None
    return who if hmac.compare_digest(mac, _token_mac(f"{who}.{expires}", salt)) else None


def _token_mac(body: str, salt: str) -> str:
    if not salt:
        raise SettingsError("no pseudonym salt: set SHOPSEARCH_PSEUDONYM_SALT, or run `shopsearch secrets init`")
    key = hmac.new(salt.encode(), b"shopsearch event token v1", hashlib.sha256).digest()
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:32]
