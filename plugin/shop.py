"""Shopper search: ``GET/POST /shop/<catalogue>/search`` -> hybrid BM25 + vector results.

Parameters (query string for GET, a JSON object for POST) are :class:`~.schemas.SearchParams`:
``q`` (required), ``user``, ``size`` (1-100), ``page``, ``strategy`` (one of
``shopsearch.query.searcher.STRATEGIES``), ``vector_weight`` (0-1), ``price_min``, ``price_max``,
``category``, ``brand``, ``colour``, ``in_stock``, ``explain``. The work is done by
:class:`shopsearch.query.searcher.Searcher`, the same object that ``shopsearch eval`` uses.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, g, jsonify, request

from shopsearch.plugin.cluster import cluster_client
from shopsearch.plugin.errors import Forbidden
from shopsearch.plugin.events import record_search, shopper_token
from shopsearch.plugin.json_body import parse_json_body
from shopsearch.plugin.safety import has_admin_credential, reject_scripts
from shopsearch.plugin.schemas import SearchParams, SearchResults, contract, parse_params
from shopsearch.query.searcher import SearchRequest, Searcher

bp = Blueprint("shop", __name__, url_prefix="/shop")
EXTENSION = "shopsearch.searcher"


def init_app(app: Flask) -> None:
    """The app's Searcher (over the app's OpenSearch client) and the search route."""
    searcher = Searcher(cluster_client(app), app.config["SHOPSEARCH"])
    app.extensions[EXTENSION] = searcher
    app.register_blueprint(bp)


def searcher() -> Searcher:
    """The app's :class:`Searcher`."""
    return current_app.extensions[EXTENSION]


def forget_cached_profiles() -> None:
    """Empty this process's cached profiles (other processes see new ones within 30 s)."""
    searcher().forget_profiles()


def parse_search_request(args: dict) -> SearchRequest:
    """Validate shopper parameters into a SearchRequest; raises BadRequest (400) naming the field.

    ``explain`` with a ``user`` shows what that shopper's profile holds (items, categories,
    brands), so it needs the admin credential (403 otherwise).
    """
    params = parse_params(SearchParams, args)
    req = SearchRequest(**params.model_dump(exclude_none=True))
    if req.explain and req.user and not has_admin_credential():
        raise Forbidden("explain with a user shows that shopper's profile: it needs the admin credential "
                        "(X-Admin-Token) on the internal face; explain without user, or search without explain",
                        field="explain")
    return req


@bp.route("/<catalogue>/search", methods=["GET", "POST"])
@contract(query=SearchParams, body=SearchParams, answer=SearchResults, errors=(400, 403, 404, 409, 502, 504))
def search(catalogue: str):
    """Search a catalogue (errors are rendered by plugin/errors.py)."""
    if request.method == "POST":
        args = parse_json_body(required=True)
        reject_scripts(args)
    else:
        args = request.args.to_dict()
    req = parse_search_request(args)
    g.strategy = req.strategy
    result = searcher().search(catalogue, req)
    g.strategy = result["strategy"]  # a request without one gets the catalogue's default
    answer = {**result, "query_id": record_search(catalogue, req.user, result)}
    if req.user:
        answer["event_token"] = shopper_token(req.user)  # send it back with this shopper's events
    return jsonify(answer)
