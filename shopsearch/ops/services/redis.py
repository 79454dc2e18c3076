"""The project's own Redis server (Debian's redis-server): Celery's broker and result backend."""

from __future__ import annotations

import shutil
import urllib.parse
from pathlib import Path

import redis as redis_client

from shopsearch.ops.services.process import ServiceError, ensure_port_free, read_pid, spawn, stop_pid, wait_until
from shopsearch.settings import Settings


def _dir(settings: Settings) -> Path:
    return settings.home_path / "redis"


def host_port(settings: Settings) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(settings.redis_url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def is_local(settings: Settings) -> bool:
    return host_port(settings)[0] in ("127.0.0.1", "localhost", "::1")


def _ping(settings: Settings) -> bool:
    return bool(redis_client.Redis.from_url(settings.redis_url, socket_timeout=1).ping())


def start(settings: Settings) -> dict:
    """Start redis-server on 127.0.0.1 if it is not running; idempotent."""
    if not is_local(settings):
        return status(settings)
    d = _dir(settings)
    pidfile, log = d / "redis.pid", d / "redis.log"
    if read_pid(pidfile):
        wait_until(lambda: _ping(settings), settings.startup_timeout, "Redis", log=log)
        return status(settings)
    host, port = host_port(settings)
    ensure_port_free("redis", host, port)
    exe = shutil.which("redis-server")
    if not exe:
        raise ServiceError("redis-server is not installed: apt-get install redis-server (./run does this as root)")
    d.mkdir(parents=True, exist_ok=True)
    # Append-only persistence so queued tasks survive a broker restart.
    proc = spawn([exe, "--bind", host, "--port", str(port), "--dir", str(d), "--pidfile", str(pidfile),
                  "--daemonize", "no", "--appendonly", "yes", "--save", "", "--protected-mode", "yes"], log)
    pidfile.write_text(str(proc.pid))
    wait_until(lambda: _ping(settings), settings.startup_timeout, f"Redis at {host}:{port}", log=log,
               alive=lambda: proc.poll() is None)
    return status(settings)


def stop(settings: Settings) -> bool:
    pid = read_pid(_dir(settings) / "redis.pid")
    if not pid:
        return False
    stop_pid(pid)
    return True


def status(settings: Settings) -> dict:
    info = {"service": "redis", "url": settings.redis_url, "pid": read_pid(_dir(settings) / "redis.pid")}
    try:
        r = redis_client.Redis.from_url(settings.redis_url, socket_timeout=1)
        info.update(running=bool(r.ping()), version=r.info("server")["redis_version"])
    except redis_client.RedisError as e:
        info.update(running=False, error=str(e))
    return info
