"""The install's own secrets: a pseudonym salt and an admin token made at random, never a default.

``<home>/secrets.toml`` (mode 0600) holds them; :func:`shopsearch.settings.load_settings` reads it
below the settings file and the ``SHOPSEARCH_*`` variables, so every process of one install (the
proxy, the Celery workers, the CLI) pseudonymises shoppers alike. ``shopsearch secrets init``, the
demo and the test session create it when it is missing; a deployment sets its own values instead
(compose reads them from its secrets).

>>> import tempfile; home = tempfile.mkdtemp()
>>> made = create(home); again = create(home)
>>> sorted(read(home)) == sorted(SECRETS) and read(home) == made == again
True
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path

FILE = "secrets.toml"
SECRETS = ("pseudonym_salt", "admin_token")
# values that shipped as defaults or examples once: never accepted as a secret
KNOWN_WEAK = frozenset({"change-me", "changeme", "secret", "admin", "password", "test", ""})


def path(home: str | os.PathLike) -> Path:
    return Path(os.path.expanduser(str(home))) / FILE


def read(home: str | os.PathLike) -> dict[str, str]:
    """The secrets stored for the install at ``home`` (empty when there is no file)."""
    p = path(home)
    if not p.is_file():
        return {}
    with open(p, "rb") as f:
        data = tomllib.load(f)
    return {k: str(v) for k, v in data.items() if k in SECRETS}


def create(home: str | os.PathLike) -> dict[str, str]:
    """The install's secrets, made at random and stored (0600) when there are none yet."""
    found = read(home)
    if all(found.get(k) for k in SECRETS):
        return found
    values = {"pseudonym_salt": secrets.token_hex(32), "admin_token": secrets.token_urlsafe(24), **found}
    p = path(home)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# made by shopsearch for this install; keep it private\n")
        for key in SECRETS:
            f.write(f'{key} = "{values[key]}"\n')
    os.replace(tmp, p)
    return {k: values[k] for k in SECRETS}


def weak(value: str) -> bool:
    """Whether ``value`` is no secret (empty, a shipped default, or shorter than 16 characters)."""
    return value.strip().lower() in KNOWN_WEAK or len(value.strip()) < 16
