"""The project's OpenSearch client (``cluster.connect``) keeps a keep-alive connection for each thread sharing it."""

import concurrent.futures
import logging
import threading

from shopsearch.cluster import connect, pool_size

THREADS, REQUESTS = 8, 25


def _connections(client):
    """urllib3's pool under the client's one host, and how many connections it has opened so far."""
    pool = client.transport.connection_pool.connections[0].pool
    return pool, pool.num_connections


def test_threads_sharing_the_client_reuse_their_connections(services, settings, caplog):
    client = connect(settings)
    start = threading.Barrier(THREADS)

    def requests(_):
        start.wait()  # all threads at once, so their requests overlap
        return [bool(client.info()["version"]["number"]) for _ in range(REQUESTS)]

    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        with concurrent.futures.ThreadPoolExecutor(THREADS) as threads:
            answered = [ok for batch in threads.map(requests, range(THREADS)) for ok in batch]
    pool, opened = _connections(client)
    assert answered == [True] * (THREADS * REQUESTS)
    assert opened <= THREADS  # never more connections than requests in flight: none opened and thrown away
    assert pool.pool.maxsize == pool_size(settings) >= THREADS  # urllib3 keeps its idle connections in a queue
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_the_pool_holds_every_proxy_thread_and_the_background_work(settings):
    assert pool_size(settings.replace(proxy_threads=32)) > 32
