"""Celery tasks. Each takes ids or small JSON payloads, never objects."""

from __future__ import annotations

import os
import socket

from .app import app


@app.task(name="shopsearch.ping")
def ping(payload: dict | None = None) -> dict:
    """Answer with the worker's pid and host: proves a task crossed the broker into the worker."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "echo": payload}
