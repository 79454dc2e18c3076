"""The project's own Celery workers: separate processes consuming the queues.

``worker_queues`` is a list of queue groups separated by ``;``; each group gets its own worker
process (``shopsearch-<first queue>@host``). The default runs the ``encode`` queue in a process of
its own, so the next chunk is encoded while the previous one is being written, as a GPU worker
would in production.

Each worker records a fingerprint of the code it runs and of the settings; ``start`` replaces a
worker whose code or settings are stale, so tests always exercise the current tasks.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import shopsearch.workers as workers_pkg
from shopsearch.ops.services.process import ServiceError, read_pid, spawn, stop_pid, wait_until
from shopsearch.settings import SETTINGS, Settings
from shopsearch.workers.app import make_app

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the shopsearch package


def _dir(settings: Settings) -> Path:
    return settings.home_path / "worker"


def groups(settings: Settings) -> list[str]:
    """The queue groups, one worker process each: ``"encode;celery,ingest"`` -> two."""
    return [g.strip() for g in settings.worker_queues.split(";") if g.strip()]


def node_name(group: str) -> str:
    return f"shopsearch-{group.split(',')[0]}@{os.uname().nodename}"


def code_fingerprint() -> str:
    """A hash of the names, sizes and mtimes of the Python files the worker imports."""
    h = hashlib.sha256()
    for root in sorted({_PACKAGE_ROOT, Path(workers_pkg.__file__).resolve().parent}):
        for p in sorted(root.rglob("*.py")):
            st = p.stat()
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _settings_env(settings: Settings) -> dict[str, str]:
    """The settings as SHOPSEARCH_* variables, so the worker process reads the same table."""
    return {s.env: str(settings.values[s.name]) for s in SETTINGS}


def _ping(settings: Settings, name: str) -> bool:
    replies = make_app(settings).control.ping(destination=[name], timeout=1.0)
    return any(name in r for r in replies)


def _files(settings: Settings, group: str) -> tuple[Path, Path, Path]:
    d = _dir(settings)
    tag = group.split(",")[0]
    return d / f"{tag}.pid", d / f"{tag}.log", d / f"{tag}.state.json"


def _start_one(settings: Settings, group: str) -> None:
    pidfile, log, state_file = _files(settings, group)
    want = {"code": code_fingerprint(), "settings": _settings_env(settings), "queues": group}
    pid = read_pid(pidfile)
    if pid:
        try:
            have = json.loads(state_file.read_text())
        except (FileNotFoundError, ValueError):
            have = {}
        if have == want:
            wait_until(lambda: _ping(settings, node_name(group)), settings.startup_timeout, "Celery worker", log=log)
            return
        stop_pid(pid, timeout=120)  # stale code or settings: replace it (warm shutdown finishes its task)
    env = {**os.environ, **_settings_env(settings)}
    argv = [sys.executable, "-m", "celery", "-A", "shopsearch.workers.app", "worker",
            "-n", node_name(group), "-Q", group, "-c", str(settings.worker_concurrency),
            "--pidfile", str(pidfile), "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    if "celery" in group.split(",") and settings.profile_update_seconds > 0:
        # one beat per deployment: embedded in the worker of the default queue (schedule in workers/app.py)
        argv += ["-B", "--schedule", str(_dir(settings) / "beat-schedule")]
    pidfile.unlink(missing_ok=True)
    proc = spawn(argv, log, env=env)
    state_file.write_text(json.dumps(want))
    wait_until(lambda: _ping(settings, node_name(group)), settings.startup_timeout,
               f"Celery worker ({group})", log=log, alive=lambda: proc.poll() is None)


def start(settings: Settings) -> dict:
    """Start every worker that does not run with the current code and settings; idempotent."""
    _dir(settings).mkdir(parents=True, exist_ok=True)
    wanted = set(groups(settings))
    for pidfile in _dir(settings).glob("*.pid"):  # workers of queue groups no longer configured
        tag = pidfile.stem
        if not any(g.split(",")[0] == tag for g in wanted):
            pid = read_pid(pidfile)
            if pid:
                stop_pid(pid, timeout=120)
            pidfile.unlink(missing_ok=True)
    for group in groups(settings):
        _start_one(settings, group)
    return status(settings)


def stop(settings: Settings) -> bool:
    stopped = False
    for pidfile in _dir(settings).glob("*.pid"):
        pid = read_pid(pidfile)
        if pid:
            stop_pid(pid, timeout=120)
            stopped = True
    return stopped


def kill(settings: Settings, queue: str | None = None) -> list[int]:
    """SIGKILL every worker (or the one whose group starts with ``queue``) and its pool children: a
    crash, for the tests and ``bench faults``."""
    killed = []
    for pidfile in _dir(settings).glob(f"{queue or '*'}.pid"):
        pid = read_pid(pidfile)
        if pid:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
            killed.append(pid)
            while read_pid(pidfile):
                time.sleep(0.1)
    return killed


def pids(settings: Settings) -> dict[str, int | None]:
    return {g: read_pid(_files(settings, g)[0]) for g in groups(settings)}


def status(settings: Settings) -> dict:
    found = pids(settings)
    info = {"service": "worker", "workers": {node_name(g): {"queues": g, "pid": p} for g, p in found.items()},
            "pid": ",".join(str(p) for p in found.values() if p) or None}
    try:
        info["running"] = all(found.values()) and all(_ping(settings, node_name(g)) for g in found)
    except Exception as e:  # broker down: the workers cannot be asked
        info.update(running=False, error=str(e))
    return info


__all__ = ["start", "stop", "status", "kill", "pids", "ServiceError"]
