"""The in-process :class:`~shopsearch.ingest.pipeline.Runner`: encode and bulk-write in this process, overlapped.

A bounded producer/consumer. One thread encodes chunk after chunk and puts each encoded chunk
on a queue of ``ingest_window`` places; the caller's thread takes them off in order and
bulk-writes them. The encoder never waits for OpenSearch unless the writer is a whole window
behind (then the queue's bound holds memory to ``ingest_window`` encoded chunks); OpenSearch
never waits for the encoder while encoded chunks are queued. Torch releases the GIL in its
forward pass, so the two threads run on two cores.

A chunk that fails as a whole (the encoder raises, or the bulk request fails after its
retries) is reported item by item (``ingest.write.failed_chunk``) and the run goes on; a
document OpenSearch refuses is reported by the bulk write itself. Nothing is dropped silently:
every item of every payload comes back indexed or failed, in payload order.

For ``shopsearch ingest --in-process`` and ``bench ingest --runner in-process``: one process
without Celery workers (a small shop, a GPU box that also writes). Celery's runner is
``shopsearch.workers.dispatch``.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator, Sequence

from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException

from shopsearch.errors import ShopsearchError
from shopsearch.ingest.encode import encode_chunk, fit_projection
from shopsearch.ingest.write import failed_chunk, write_chunk
from shopsearch.settings import Settings

_DONE = object()
# what a chunk's encoding may raise for reasons of its data or model, not of this code
ENCODE_ERRORS = (ShopsearchError, OSError, RuntimeError, ValueError)
WRITE_ERRORS = (OpenSearchException, ShopsearchError, OSError)


class InProcessRunner:
    """Encode in a thread of this process, bulk-write in the caller's thread, ``window`` chunks apart at most."""

    def __init__(self, settings: Settings, client: OpenSearch, window: int | None = None):
        self.settings = settings
        self.client = client
        self.window = max(1, window or settings.ingest_window)

    def __repr__(self) -> str:
        return f"InProcessRunner(window={self.window})"

    def fit_projection(self, payload: dict) -> dict:
        return fit_projection(self.settings, payload)

    def encode_and_write(self, payloads: Sequence[dict]) -> Iterator[dict]:
        encoded: queue.Queue = queue.Queue(maxsize=self.window)
        stop = threading.Event()

        def produce() -> None:
            for payload in payloads:
                if stop.is_set():
                    break
                try:
                    item = (True, encode_chunk(self.settings, payload))
                except ENCODE_ERRORS as e:
                    item = (False, failed_chunk(payload, e))
                encoded.put(item)  # blocks while the writer is a whole window behind
            encoded.put((None, _DONE))

        producer = threading.Thread(target=produce, name="shopsearch-encode", daemon=True)
        producer.start()
        try:
            while True:
                ok, value = encoded.get()
                if value is _DONE:
                    return
                if not ok:
                    yield value
                    continue
                try:
                    yield write_chunk(self.client, value)
                except WRITE_ERRORS as e:
                    yield failed_chunk(value, e)
        finally:
            stop.set()
            while producer.is_alive():  # a caller that stopped early: unblock the producer's put
                try:
                    encoded.get(timeout=0.05)
                except queue.Empty:
                    pass

    def send(self, task: str, *args) -> None:
        raise ShopsearchError(f"the in-process runner runs ingest chunks only; task {task!r} needs the Celery "
                              f"workers (shopsearch services up)")
