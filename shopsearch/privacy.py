"""Shopper privacy: the one place a shopper id becomes the pseudonym that is stored."""

from __future__ import annotations

import hashlib
import hmac


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
    return hmac.new(salt.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:32]
