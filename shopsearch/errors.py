"""The one error hierarchy: every error shopsearch raises on purpose is a :class:`ShopsearchError`.

Flows raise these; boundaries translate them once each: ``plugin/errors.py`` (the ordered table
to HTTP status, with a request id) and ``shopsearch/cli`` (a ``click.ClickException`` with the
message). ``status`` and ``code`` say how the HTTP boundary answers; ``field`` names the input at
fault when there is one. The old built-in bases (``ValueError``, ``LookupError``, ...) stay as
second bases, so code that catches those keeps working.

>>> issubclass(RolloutNotFound, ShopsearchError) and issubclass(RolloutNotFound, LookupError)
True
>>> SearchError("no such strategy", field="strategy").status
400
"""

from __future__ import annotations


class ShopsearchError(Exception):
    """Base of every deliberate shopsearch error; its message is meant for the caller."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str = "", *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def location(self) -> str | None:
        """The input at fault as the caller wrote it (``field``; an event of a batch says which)."""
        return self.field


# --- base layer -----------------------------------------------------------------------------------

class SettingsError(ShopsearchError, ValueError):
    """A setting has a wrong type or an unknown name."""

    status, code = 400, "bad_setting"


class InputError(ShopsearchError, ValueError):
    """A file or value given to a command cannot be used (a catalogue file, a field mapping,
    judgments, orders); the message names it and what is wrong."""

    status, code = 400, "bad_request"


class Missing(ShopsearchError, LookupError):
    """Something a command needs is not there (a live index, clicks in a window, a training run)."""

    status, code = 404, "not_found"


class ServiceError(ShopsearchError, RuntimeError):
    """A service could not be installed, started or reached. The message says what to do."""

    status, code = 503, "unavailable"


# --- encoders and index administration --------------------------------------------------------------

class EncoderError(ShopsearchError, RuntimeError):
    """The configured model cannot be found or loaded."""

    status, code = 503, "encoder_unavailable"


class MappingError(ShopsearchError, ValueError):
    """A mapping template is missing a value, or its vectors do not fit the encoder."""

    status, code = 409, "model_mismatch"


class ConcurrentChange(ShopsearchError, RuntimeError):
    """Another writer changed the state this operation read (an alias moved, a lock stayed held, a
    document changed while it was deleted): read the state again and retry; the message says what
    was done, if anything."""

    status, code = 409, "concurrent_change"


class IndexVersionError(ShopsearchError, ValueError):
    """A catalogue or index version is unknown, or an operation would break the live alias."""

    status, code = 400, "bad_request"


# --- ingest ---------------------------------------------------------------------------------------

class Rejected(ShopsearchError, ValueError):
    """A record cannot be indexed: ``reason`` is a snake_case code, ``detail`` says why."""

    status, code = 400, "rejected"

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class AlreadyExists(ShopsearchError, ValueError):
    """A create names a record that is already there (a product written with ``_create``)."""

    status, code = 409, "already_exists"


# --- query ----------------------------------------------------------------------------------------

class SearchError(ShopsearchError):
    """A shopper search that cannot be answered; ``status`` is the HTTP status to use."""

    def __init__(self, message: str, status: int = 400, code: str = "bad_request", field: str | None = None):
        super().__init__(message, field=field)
        self.status, self.code = status, code


# --- learn ----------------------------------------------------------------------------------------

class Overloaded(ShopsearchError):
    """More is waiting to be stored than the bound allows: try again after ``retry_after`` seconds (503)."""

    status, code = 503, "overloaded"

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class EventError(ShopsearchError, ValueError):
    """An invalid event: ``field`` is the key at fault, ``index`` the event's place in a batch.

    >>> str(EventError("must be a string", field="user_id", index=2))
    "event 2: field 'user_id': must be a string"
    """

    status, code = 400, "bad_request"

    def __init__(self, message: str, field: str | None = None, index: int | None = None):
        self.index = index
        super().__init__(message, field=field)
        self.args = (self._render(),)

    def __str__(self) -> str:
        return self._render()

    def _render(self) -> str:
        where = f"event {self.index}: " if self.index is not None else ""
        what = f"field {self.field!r}: " if self.field is not None else ""
        return f"{where}{what}{self.message}"

    @property
    def location(self) -> str | None:
        """``events[1].position`` for the field of an event of a batch.

        >>> EventError("must be an integer >= 1", "position", 1).location
        'events[1].position'
        """
        if self.index is not None and self.field is not None:
            return f"events[{self.index}].{self.field}"
        return self.field

    def at(self, index: int) -> EventError:
        """The same error, placed at ``index`` of a batch."""
        return EventError(self.message, self.field, index)


class RegistryError(ShopsearchError, LookupError):
    """An unknown version, a missing weight directory, or an invalid status."""

    status, code = 404, "not_found"


class RolloutError(ShopsearchError, ValueError):
    """A rollout step cannot be done; the message says why and what to do."""

    status, code = 409, "rollout_conflict"


class RolloutNotFound(RolloutError, LookupError):
    """The catalogue or version named does not exist."""

    status, code = 404, "not_found"


class RolloutInterrupted(RolloutError):
    """``reindex(stop_before=...)`` stopped on purpose: a crash, for tests and dry runs."""
