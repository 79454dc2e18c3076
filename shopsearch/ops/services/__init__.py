"""Services the project starts itself on 127.0.0.1: OpenSearch (k-NN), Redis, RabbitMQ, Celery workers.

``up`` is idempotent: a service that already runs (and, for the worker, runs current code) is
left alone. A service that cannot start raises ServiceError with its log tail.
"""

from __future__ import annotations

from shopsearch.ops.services import opensearch, rabbitmq, redis, worker
from shopsearch.ops.services.process import ServiceError
from shopsearch.settings import Settings

ORDER = (("opensearch", opensearch), ("redis", redis), ("rabbitmq", rabbitmq), ("worker", worker))


def up(settings: Settings, only: tuple[str, ...] = ()) -> dict[str, dict]:
    """Start every service (or those named in ``only``) and return their status."""
    return {name: mod.start(settings) for name, mod in ORDER if not only or name in only}


def down(settings: Settings, only: tuple[str, ...] = ()) -> dict[str, bool]:
    """Stop the services the project started, workers first."""
    return {name: mod.stop(settings) for name, mod in reversed(ORDER) if not only or name in only}


def status(settings: Settings) -> dict[str, dict]:
    return {name: mod.status(settings) for name, mod in ORDER}


__all__ = ["up", "down", "status", "ServiceError"]
