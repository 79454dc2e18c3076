"""The Celery app. Start a worker with ``celery -A shopsearch.workers.app worker`` (``shopsearch services up`` does).

Routing: cleaning and indexing run on the ``ingest`` queue, encoding on ``encode`` (GPU workers
consume it; the project's own CPU worker takes it too when no GPU worker runs). Work that must
not be lost is acknowledged late, so a killed worker's task is delivered again.
"""

from __future__ import annotations

from celery import Celery

from shopsearch.settings import Settings, load_settings

TASK_ROUTES = {
    "shopsearch.ingest.*": {"queue": "ingest"},
    "shopsearch.profiles.*": {"queue": "ingest"},
    "shopsearch.encode.*": {"queue": "encode"},
    "shopsearch.rollout.*": {"queue": "rollout"},
    "shopsearch.finetune.*": {"queue": "rollout"},
}


def beat_schedule(settings: Settings) -> dict:
    """The periodic tasks (pure): profiles and popularity of every catalogue with new events.

    >>> beat_schedule(Settings({"profile_update_seconds": 0}))
    {}
    >>> beat_schedule(Settings({"profile_update_seconds": 60}))["profiles-periodic"]["schedule"]
    60.0
    """
    seconds = settings.profile_update_seconds
    if seconds <= 0:
        return {}
    return {"profiles-periodic": {"task": "shopsearch.profiles.update_recent", "schedule": float(seconds),
                                  "args": [2 * seconds]}}


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or load_settings()
    app = Celery("shopsearch", broker=settings.broker, backend=settings.results,
                 include=["shopsearch.workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_routes=TASK_ROUTES,
        task_default_queue="celery",
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        # Redis as the broker: a late-acked task is redelivered this long after its worker died; it must
        # exceed the longest task (RabbitMQ redelivers when the worker's connection drops, and ignores it)
        broker_transport_options={"visibility_timeout": settings.task_visibility_timeout},
        worker_hijack_root_logger=False,
        beat_schedule=beat_schedule(settings),
    )
    return app


app = make_app()
