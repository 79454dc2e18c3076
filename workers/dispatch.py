"""The flows' work sent through Celery: the :class:`~shopsearch.ingest.pipeline.Runner` of the workers.

The ingest, reindex and fine-tuning flows never import Celery; they take a runner. This module
is the Celery one: chunks go out as chains ``shopsearch.encode.chunk`` (queue ``encode``) ->
``shopsearch.ingest.write`` (queue ``ingest``), ``ingest_window`` of them in flight, sent by task name through one app built from
the run's settings. ``run_ingest``, ``reindex`` and ``run_loop`` are the flows bound to it, for
the CLI, the admin routes, the tasks and the tests.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Iterator, Sequence

from celery import Celery

from shopsearch.ingest import pipeline
from shopsearch.ingest.write import failed_chunk
from shopsearch.learn import loop
from shopsearch.learn import reindex as rebuild
from shopsearch.settings import Settings
from shopsearch.workers.app import make_app

CHUNK_TIMEOUT = 24 * 3600  # seconds a run waits for one chunk's outcome
PROJECTION_TIMEOUT = 3600


class CeleryRunner:
    """Runs chunks and background work on the project's Celery workers."""

    def __init__(self, app: Celery, window: int = 8, chunk_timeout: float = CHUNK_TIMEOUT):
        self.app = app
        self.window = max(1, window)
        self.chunk_timeout = chunk_timeout  # a chunk not written by then is reported failed (it may still be written)

    def fit_projection(self, payload: dict) -> dict:
        return self.app.send_task("shopsearch.encode.fit_projection", args=[payload]).get(timeout=PROJECTION_TIMEOUT)

    def encode_and_write(self, payloads: Sequence[dict]) -> Iterator[dict]:
        # a window of chains in flight: the encode worker always has the next chunk queued while the
        # ingest worker writes, and Redis holds at most `window` encoded chunks, not the whole catalogue
        todo = iter(payloads)
        pending = deque((p, self._chain(p)) for p in islice(todo, self.window))
        while pending:
            payload, result = pending.popleft()
            following = next(todo, None)
            if following is not None:
                pending.append((following, self._chain(following)))
            try:
                yield result.get(timeout=self.chunk_timeout, propagate=True)
            except Exception as e:  # a task's error comes back re-raised as any class: its items are reported failed
                yield failed_chunk(payload, e)

    def _chain(self, payload: dict):
        return (self.app.signature("shopsearch.encode.chunk", args=[payload])
                | self.app.signature("shopsearch.ingest.write")).apply_async()

    def send(self, task: str, *args) -> None:
        self.app.signature(task, args=list(args)).apply_async()


def runner(settings: Settings, app: Celery | None = None, chunk_timeout: float = CHUNK_TIMEOUT) -> CeleryRunner:
    """The Celery runner for ``settings`` (``app``: an app already built from them; ``chunk_timeout``:
    seconds to wait for each chunk, a day for an ingest run, less where a client waits)."""
    return CeleryRunner(app or make_app(settings), settings.ingest_window, chunk_timeout)


def run_ingest(settings: Settings, *args, app: Celery | None = None, **kwargs) -> pipeline.Summary:
    """:func:`shopsearch.ingest.pipeline.run_ingest` with its chunks on the Celery workers."""
    return pipeline.run_ingest(settings, *args, runner=runner(settings, app), **kwargs)


def reindex(settings: Settings, *args, app: Celery | None = None, **kwargs) -> dict:
    """:func:`shopsearch.learn.reindex.reindex` with its chunks on the Celery workers."""
    return rebuild.reindex(settings, *args, runner=runner(settings, app), **kwargs)


def run_loop(settings: Settings, *args, app: Celery | None = None, **kwargs) -> dict:
    """:func:`shopsearch.learn.loop.run` with its reindex and profile rebuild on the Celery workers."""
    return loop.run(settings, *args, runner=runner(settings, app), **kwargs)


def start_chain(settings: Settings, catalogue: str, judgments_path, *, version: str | None = None, **params):
    """The learning loop as one Celery chain, a task per step on the ``rollout`` worker; returns the AsyncResult.

    Every task resumes from ``loop.json``, so after a crash the same chain (``version``) can be
    sent again and only the steps not yet done run.
    """
    since, until = params.pop("since", None), params.pop("until", None)
    if not version:
        version = loop.prepare(settings, catalogue, judgments_path, since=since, until=until, **params)
    app = make_app(settings)
    chain = None
    for step in loop.STEPS:
        sig = app.signature("shopsearch.finetune.step", args=[version, step, str(settings.models_path)], immutable=True)
        chain = sig if chain is None else chain | sig
    return chain.apply_async()
