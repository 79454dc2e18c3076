"""The storefront's own contracts (pydantic models): what its routes take and answer.

The search takes :class:`shopsearch.plugin.schemas.SearchParams` as ``/shop/<catalogue>/search``
does; these are the storefront's additions.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from shopsearch.plugin.schemas import Answer, Filters, SearchResults, Text


def _number(value):
    """A form or query value given as a number; a list or object is never one."""
    if isinstance(value, (dict, list, bool)):
        raise ValueError("not a number")
    return value


class SuggestParams(BaseModel):
    """``GET /storefront/api/<catalogue>/suggest``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    q: Annotated[str, Field(min_length=1, max_length=100)] = Field(description="What the shopper has typed so far.")
    size: Annotated[int, Field(ge=1, le=20), BeforeValidator(_number)] = Field(8, description="Suggestions wanted.")


class PhotoParams(Filters):
    """``POST /storefront/api/<catalogue>/photo``: a multipart form with the file ``image`` and these fields."""

    q: Annotated[str, Field(max_length=500)] = Field("", description="Words typed beside the photo (optional).")
    user: Text = Field(None, description="Shopper id (for the event token and the query log).")
    size: Annotated[int, Field(ge=1, le=100), BeforeValidator(_number)] = Field(24, description="Hits per page.")


class StorefrontResults(SearchResults):
    facets: dict = Field(description="{facet: [{value, count}]} over the ranked results (price: with from/to).")
    facets_over: int = Field(description="How many of the best results the facet counts cover.")


class Suggestions(Answer):
    suggestions: list[dict] = Field(description="[{text, kind: query|title, count}], logged queries first.")


class Showcase(Answer):
    catalogue: str
    queries: list[str]
    shoppers: list[dict]
