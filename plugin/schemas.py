"""The middleware's contracts as pydantic models: what each route takes and answers.

The same models validate the input (:func:`parse_params` raises :class:`BadRequest` naming the
field at fault) and describe the routes in ``/openapi.json`` (see ``openapi.py``): a route
declares its contract with :func:`contract`, so the document cannot drift from the code.
Limits live on the models (``ge``/``le``, ``max_length``, finite numbers).

>>> parse_params(SearchParams, {"q": " red shoes ", "size": "5", "in_stock": "yes"}).model_dump(exclude_none=True)
{'in_stock': True, 'q': 'red shoes', 'size': 5, 'page': 0, 'explain': False}
>>> try:
...     parse_params(RecommendParams, {"size": "many"})
... except BadRequest as e:
...     print(e.field, "/", e)
size / size must be an integer, got 'many'
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Callable, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from shopsearch.learn.events import MAX_BATCH, MAX_FLOAT32, Event
from shopsearch.plugin.errors import BadRequest
from shopsearch.query.searcher import STRATEGIES

Params = TypeVar("Params", bound=BaseModel)
MAX_QUERY_CHARS = 500


def _scalar(value: Any) -> Any:
    """Query strings and JSON bodies alike: objects are never a parameter's value."""
    if isinstance(value, (dict, list)):
        raise ValueError("not a single value")
    return value


def _text(value: Any) -> Any:
    value = _scalar(value)  # blanks never get here: Filters drops them first
    # a JSON body may send a number where text is expected (a numeric brand, q=42)
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _number(value: Any) -> Any:
    value = _scalar(value)
    if isinstance(value, bool):  # JSON true is not 1
        raise ValueError("a boolean is not a number")
    return value


# Constraints come before the BeforeValidator so that the JSON schema shows them (minimum, ...).
Text = Annotated[str, Field(max_length=200), BeforeValidator(_text)] | None
# a price the index's float field can hold (a larger bound makes OpenSearch refuse the whole query)
Price = Annotated[float, Field(allow_inf_nan=False, ge=0, le=MAX_FLOAT32), BeforeValidator(_number)] | None
Flag = Annotated[bool, BeforeValidator(_scalar)] | None
Weight = Annotated[float, Field(allow_inf_nan=False, ge=0, le=1), BeforeValidator(_number)] | None


class Filters(BaseModel):
    """The shopper's explicit filters, shared by search and recommendations."""

    model_config = ConfigDict(extra="forbid")

    price_min: Price = Field(None, description="Lowest price (inclusive).")
    price_max: Price = Field(None, description="Highest price (inclusive).")
    category: Text = Field(None, description="Category filter.")
    brand: Text = Field(None, description="Brand filter.")
    colour: Text = Field(None, description="Colour filter.")
    in_stock: Flag = Field(None, description="Only products in stock.")
    gender: Text = Field(None, description="Gender filter (the catalogue's values, e.g. men, women, unisex).")

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, values: Any) -> Any:
        """A blank known parameter (``?size=``) is as if it were not sent: its default applies."""
        if not isinstance(values, dict):
            return values
        return {k: v for k, v in values.items()
                if k not in cls.model_fields or not (v is None or (isinstance(v, str) and not v.strip()))}

    @model_validator(mode="after")
    def _price_range(self) -> "Filters":
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise _fault("price_min", "price_min must not exceed price_max")
        return self

    def filter_values(self) -> dict[str, Any]:
        """The filters as keyword arguments of ``query.build.request_filters``."""
        return {name: getattr(self, name) for name in Filters.model_fields}


class SearchParams(Filters):
    """``/shop/<catalogue>/search``: query string for GET, a JSON object for POST."""

    q: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS), BeforeValidator(_text)] = Field(
        description="The shopper's query.")
    user: Text = Field(None, description="Shopper id; personalises the ranking from the shopper's profile.")
    size: Annotated[int, Field(ge=1, le=100), BeforeValidator(_number)] = Field(10, description="Hits per page.")
    page: Annotated[int, Field(ge=0, le=100), BeforeValidator(_number)] = Field(0, description="Page, from 0.")
    strategy: Annotated[Literal[STRATEGIES], BeforeValidator(_text)] | None = Field(  # type: ignore[valid-type]
        None, description="Retrieval strategy (default: learned once a ranker passed the gate for the catalogue, else hybrid).")
    vector_weight: Weight = Field(
        None, description="Weight of the vector list in hybrid fusion (default: setting vector_weight).")
    explain: Annotated[bool, BeforeValidator(_scalar)] = Field(False, description="Include how each hit's score was made, and the pipeline.")

    @model_validator(mode="after")
    def _text_is_trimmed(self) -> "SearchParams":
        self.q = self.q.strip()
        if not self.q:
            raise _fault("q", "q (the shopper's query) is required")
        if len(unicodedata.normalize("NFKC", self.q)) > MAX_QUERY_CHARS:  # what understand.py will work on
            raise _fault("q", f"q is longer than {MAX_QUERY_CHARS} characters once Unicode-normalised (NFKC)")
        return self


class RecommendParams(Filters):
    """``/shop/<catalogue>/recommend/similar|also-bought/<item_id>``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    size: Annotated[int, Field(ge=1, le=50), BeforeValidator(_number)] = Field(10, description="List length.")


class ForYouParams(RecommendParams):
    """``/shop/<catalogue>/recommend/for-you``: ``user`` is required."""

    user: Annotated[str, Field(min_length=1, max_length=200), BeforeValidator(_text)] = Field(
        description="The shopper's id.")


class ProfileUpdate(BaseModel):
    """``POST /admin/profiles/<catalogue>/update``."""

    users: list[str] | None = Field(None, description="Shop ids of the shoppers to update (default: all with events).")
    since: str | None = Field(None, description="Only shoppers with events received after this ISO time.")
    wait: bool = Field(False, description="Wait for the task and answer its result.")


NonEmpty = Annotated[str, Field(min_length=1, pattern=r"\S")]


class ReindexRequest(BaseModel):
    """``POST /admin/catalogues/<catalogue>/reindex``."""

    model_config = ConfigDict(extra="ignore")

    model: NonEmpty | None = Field(None, description="Registry version, model directory or package name.")
    source: NonEmpty | None = Field(None, description="Catalogue file on the server (default: the live documents).")
    mapping: NonEmpty | None = Field(None, description="Field mapping of source.")
    swap: Annotated[bool, Field(strict=True)] = Field(True, description="Swap the alias once verified.")


class PromoteRequest(BaseModel):
    """``POST /admin/catalogues/<catalogue>/promote``."""

    model_config = ConfigDict(extra="ignore")

    index: NonEmpty = Field(description="The version to serve: <catalogue>-vN, vN or N.")


class EventBatch(BaseModel):
    """``POST /events`` also takes one event or a bare list of at most ``MAX_BATCH`` events."""

    events: list[Event] = Field(min_length=1, max_length=MAX_BATCH)


# --- answers -----------------------------------------------------------------------------------

class Answer(BaseModel):
    """Answers are documented, not validated: more fields may appear."""

    model_config = ConfigDict(extra="allow")


class Error(Answer):
    """Every error the middleware itself answers; ``field`` only when one input is at fault."""

    error: str = Field(description="A snake_case code, e.g. bad_request, not_found, opensearch_unavailable.")
    message: str
    request_id: str = Field(description="Also in the X-Request-Id header and the logs.")
    field: str | None = None


class Hit(Answer):
    id: str
    score: float


class SearchResults(Answer):
    hits: list[Hit]
    total: int
    strategy: str
    query_id: str = Field(description="Quote it in events that follow this search.")
    took_ms: float | None = Field(None, description="The search's time in the middleware (of the first answer when cached).")
    stage_ms: dict[str, float] | None = Field(None, description="Each pipeline stage's share of took_ms, by stage "
                                              "(Retrieve, MinMax, LearnedRank...): where a query's time goes.")


class Recommendations(Answer):
    catalogue: str
    strategy: str
    hits: list[Hit]
    reason: str | None = Field(None, description="Why the list is a fallback or empty.")


class EventsAccepted(Answer):
    accepted: int
    unknown_query_ids: list[str]


class TaskStarted(Answer):
    task_id: str


# --- validation --------------------------------------------------------------------------------

def contract(*, query: type[BaseModel] | None = None, body: type[BaseModel] | None = None,
             answer: type[BaseModel] | None = None, status: int = 200, errors: tuple[int, ...] = (400,),
             ) -> Callable[[Callable], Callable]:
    """Record a view's contract for ``/openapi.json`` (the view still calls :func:`parse_params`)."""
    def record(view: Callable) -> Callable:
        view.contract = {"query": query, "body": body, "answer": answer, "status": status, "errors": errors}
        return view
    return record


_KINDS = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "a string"}
_LIMITS = {"greater_than_equal": "must be >= {ge}", "less_than_equal": "must be <= {le}",
           "string_too_long": "is longer than {max_length} characters", "string_too_short": "must not be empty",
           "string_pattern_mismatch": "must be a non-empty string", "too_short": "must have at least {min_length} items",
           "too_long": "must have at most {max_length} items", "finite_number": "must be a finite number"}


def parse_params(model: type[Params], values: dict[str, Any]) -> Params:
    """``values`` (a query string or a JSON object) validated by ``model``; :class:`BadRequest` names the field.

    Unknown parameters are reported first, since a typo would otherwise be silently ignored.
    """
    unknown = sorted(set(values) - set(model.model_fields))
    if unknown and model.model_config.get("extra") == "forbid":
        raise BadRequest(f"unknown parameter(s): {', '.join(unknown)}; allowed: {', '.join(model.model_fields)}",
                         field=unknown[0])
    try:
        return model.model_validate(values)
    except ValidationError as e:
        raise _bad_request(e) from None


def _fault(field: str, message: str) -> ValueError:
    error = ValueError(message)
    error.field = field  # type: ignore[attr-defined]
    return error


def _bad_request(error: ValidationError) -> BadRequest:
    fault = error.errors(include_url=False)[0]
    cause = (fault.get("ctx") or {}).get("error")
    if getattr(cause, "field", None):  # raised by a model validator, already worded
        return BadRequest(str(cause), field=cause.field)
    field = ".".join(str(p) for p in fault["loc"] if not isinstance(p, int) and "[" not in str(p)) or None
    got = fault.get("input")
    kind, ctx = fault["type"], fault.get("ctx") or {}
    if kind == "missing":
        return BadRequest(f"{field} is required", field=field)
    if kind in _LIMITS:
        return BadRequest(f"{field} {_LIMITS[kind].format(**ctx)}, got {got!r}", field=field)
    if kind == "value_error":
        return BadRequest(f"{field}: {cause}, got {got!r}", field=field)
    if kind == "literal_error":
        return BadRequest(f"unknown {field} {got!r}; one of {ctx.get('expected', '')}", field=field)
    phrase = _KINDS.get(kind.split("_")[0])
    if phrase is not None:
        return BadRequest(f"{field} must be {phrase}, got {got!r}", field=field)
    return BadRequest(f"{field}: {fault['msg']}, got {got!r}", field=field)
