"""The middleware's serving model: gunicorn's settings, from the settings table.

``gunicorn -c python:shopsearch.plugin.serving "shopsearch.plugin.app:create_app(face='public')"`` serves
``proxy_workers`` processes of ``proxy_threads`` threads each (gthread: a thread waits on
OpenSearch while another encodes), and gives each worker ``inference_threads`` intra-op threads
for the encoder and re-ranker, so the workers do not oversubscribe the cores (the chosen values
and the measurements that chose them: docs/ARCHITECTURE.md, "Serving model").
"""

from __future__ import annotations

import gc
import os
import threading

from shopsearch.settings import Settings, load_settings

_settings = load_settings()

bind = f"{_settings.proxy_host}:{_settings.proxy_port}"
workers = _settings.proxy_workers
threads = _settings.proxy_threads
worker_class = "gthread"
timeout = 120
graceful_timeout = 30
# gunicorn's control socket lives at one path per user: the two faces' masters would take it from
# each other, and nothing here uses it
control_socket_disable = True


def intra_threads(settings: Settings, workers: int | None = None, cores: int | None = None) -> int:
    """Intra-op threads per worker: ``inference_threads``, or the cores shared out among the
    ``workers`` (default ``proxy_workers``; gunicorn's ``-w`` when given).

    >>> from shopsearch.settings import load_settings
    >>> intra_threads(load_settings({"SHOPSEARCH_PROXY_WORKERS": "2"}), cores=2)
    1
    >>> intra_threads(load_settings({}), workers=1, cores=2)
    2
    >>> intra_threads(load_settings({"SHOPSEARCH_INFERENCE_THREADS": "3"}), cores=2)
    3
    """
    if settings.inference_threads > 0:
        return settings.inference_threads
    return max(1, (cores or os.cpu_count() or 1) // max(1, workers or settings.proxy_workers))


def gc_threshold(settings: Settings, current: tuple[int, int, int]) -> tuple[int, int, int]:
    """The collector's thresholds for a proxy worker: ``proxy_gc_threshold`` allocations between young
    collections (0: Python's own), the older generations' counts as they are.

    >>> gc_threshold(load_settings({}), (700, 10, 10))
    (20000, 10, 10)
    >>> gc_threshold(load_settings({"SHOPSEARCH_PROXY_GC_THRESHOLD": "0"}), (700, 10, 10))
    (700, 10, 10)
    """
    young = settings.proxy_gc_threshold
    return (young, *current[1:]) if young > 0 else current


def post_fork(server, worker) -> None:
    """In each worker, before the app loads: the garbage collector's thresholds (``gc_threshold``),
    its share of intra-op threads, for torch and for the ONNX Runtime sessions (which read
    ``inference_threads`` when the worker's app loads its settings)."""
    gc.set_threshold(*gc_threshold(_settings, gc.get_threshold()))
    worker.log.info("garbage collector thresholds %s", gc.get_threshold())
    share = intra_threads(_settings, server.cfg.workers)
    os.environ["SHOPSEARCH_INFERENCE_THREADS"] = str(share)  # this worker's settings, read by create_app
    import torch  # why: heavy; the worker loads it with the encoder anyway, this only sizes its thread pool
    torch.set_num_threads(share)


def post_worker_init(worker) -> None:
    """Once a worker has loaded its app: a background thread loads the ``warm_catalogues`` (their
    live versions, speller, encoder, ranker: ``Searcher.warm``), so the first shoppers do not wait
    for them; a search that comes first waits for the same load rather than starting its own."""
    searcher = getattr(worker.wsgi, "extensions", {}).get("shopsearch.searcher")
    if searcher is None or not _settings.warm_catalogues.strip():
        return

    def warm() -> None:
        for catalogue, done in searcher.warm(_settings.warm_catalogues).items():
            worker.log.info("warmed catalogue %s: %s", catalogue, done)
    threading.Thread(target=warm, name="warm-catalogues", daemon=True).start()
