"""The project's own Celery worker, a separate process consuming the ingest and encode queues.

The worker records a fingerprint of the code it runs; ``start`` replaces a worker whose code
is stale (another checkout, or edited sources), so tests always exercise the current tasks.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from ..settings import Settings
from .process import ServiceError, read_pid, spawn, stop_pid, wait_until

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def _dir(settings: Settings) -> Path:
    return settings.home_path / "worker"


def code_fingerprint() -> str:
    """A hash of the names, sizes and mtimes of the Python files the worker imports."""
    import shopsearch.workers as workers_pkg
    h = hashlib.sha256()
    for root in sorted({_PACKAGE_ROOT, Path(workers_pkg.__file__).resolve().parent}):
        for p in sorted(root.rglob("*.py")):
            st = p.stat()
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _ping(settings: Settings, name: str) -> bool:
    from ..workers.app import make_app
    app = make_app(settings)
    replies = app.control.ping(destination=[name], timeout=1.0)
    return any(name in r for r in replies)


def node_name() -> str:
    return f"shopsearch@{os.uname().nodename}"


def start(settings: Settings) -> dict:
    """Start the worker if none runs with the current code and settings; idempotent."""
    d = _dir(settings)
    d.mkdir(parents=True, exist_ok=True)
    pidfile, log, state_file = d / "worker.pid", d / "worker.log", d / "state.json"
    want = {"code": code_fingerprint(), "settings": _settings_env(settings)}
    pid = read_pid(pidfile)
    if pid:
        try:
            have = json.loads(state_file.read_text())
        except (FileNotFoundError, ValueError):
            have = {}
        if have == want:
            wait_until(lambda: _ping(settings, node_name()), settings.startup_timeout, "Celery worker", log=log)
            return status(settings)
        stop_pid(pid, timeout=60)  # stale code or settings: replace it
    env = {**os.environ, **{s: v for s, v in _settings_env(settings).items()}}
    argv = [sys.executable, "-m", "celery", "-A", "shopsearch.workers.app", "worker",
            "-n", node_name(), "-Q", settings.worker_queues, "-c", str(settings.worker_concurrency),
            "--pidfile", str(pidfile), "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    pidfile.unlink(missing_ok=True)
    proc = spawn(argv, log, env=env)
    state_file.write_text(json.dumps(want))
    wait_until(lambda: _ping(settings, node_name()), settings.startup_timeout, "Celery worker", log=log,
               alive=lambda: proc.poll() is None)
    return status(settings)


def _settings_env(settings: Settings) -> dict[str, str]:
    """The settings as SHOPSEARCH_* variables, so the worker process reads the same table."""
    from ..settings import SETTINGS
    return {s.env: str(settings.values[s.name]) for s in SETTINGS}


def stop(settings: Settings) -> bool:
    pid = read_pid(_dir(settings) / "worker.pid")
    if not pid:
        return False
    stop_pid(pid, timeout=60)
    return True


def kill(settings: Settings) -> int | None:
    """SIGKILL the worker (and its pool children): a crash, for tests of acks_late recovery."""
    import signal
    pid = read_pid(_dir(settings) / "worker.pid")
    if pid:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
        while read_pid(_dir(settings) / "worker.pid"):
            time.sleep(0.1)
    return pid


def status(settings: Settings) -> dict:
    pid = read_pid(_dir(settings) / "worker.pid")
    info = {"service": "worker", "name": node_name(), "queues": settings.worker_queues, "pid": pid}
    try:
        info["running"] = bool(pid) and _ping(settings, node_name())
    except Exception as e:  # broker down: the worker cannot be asked
        info.update(running=False, error=str(e))
    return info


__all__ = ["start", "stop", "status", "kill", "ServiceError"]
