"""The command line's one error boundary: :func:`fail_cleanly` turns the project's own errors into
``click.ClickException`` (a one-line message, exit 1) with a fix-it hint; anything else is a bug
and keeps its traceback.

>>> hint_for(RolloutNotFound("no catalogue 'shop'"))
'list the catalogues and versions with `shopsearch status`'
"""

from __future__ import annotations

from functools import wraps
from typing import Callable, TypeVar

import click
from opensearchpy.exceptions import ConnectionError as OSConnectionError

from shopsearch.errors import (EncoderError, IndexVersionError, MappingError, RegistryError, RolloutNotFound,
                               SearchError, ServiceError, SettingsError, ShopsearchError)

F = TypeVar("F", bound=Callable)

UNREACHABLE = "OpenSearch cannot be reached: start it with `shopsearch services up`"

# Ordered like the web table: the first matching row gives the hint.
HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (SettingsError, "check the SHOPSEARCH_* variables and the settings file (`shopsearch settings` lists them)"),
    (ServiceError, "see `shopsearch services status` and the service's log under SHOPSEARCH_HOME"),
    (EncoderError, "install the model's package or set text_model (`shopsearch settings`)"),
    (MappingError, "reindex with a model whose vectors fit the mapping (`shopsearch reindex --model ...`)"),
    (RolloutNotFound, "list the catalogues and versions with `shopsearch status`"),
    (RegistryError, "list the registry's models with `shopsearch models`"),
    (IndexVersionError, "list the versions with `shopsearch index list <catalogue>`"),
    (SearchError, "ingest the catalogue first: `shopsearch ingest <file> --catalogue <catalogue>`"),
)


def hint_for(error: BaseException) -> str | None:
    """The fix-it hint for ``error``, or None when the message says it all."""
    return next((hint for kind, hint in HINTS if isinstance(error, kind)), None)


def message_for(error: BaseException) -> str:
    """The one-line message the CLI prints for one of the project's errors."""
    if isinstance(error, OSConnectionError):
        return UNREACHABLE
    hint = hint_for(error)
    return f"{error} ({hint})" if hint else str(error)


def fail_cleanly(fn: F) -> F:
    """Run a command, its :class:`ShopsearchError` or unreachable cluster as a ``ClickException``."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ShopsearchError, OSConnectionError) as e:
            raise click.ClickException(message_for(e)) from None
    return wrapper  # type: ignore[return-value]
