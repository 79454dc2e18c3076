"""The project's own RabbitMQ (Debian's rabbitmq-server): the Celery broker.

A task is acknowledged when it finishes (``acks_late``); RabbitMQ hands an unacknowledged
message back to the queue the moment its consumer's connection drops, so the work of a killed
worker goes to the next one at once (a Redis broker waits ``task_visibility_timeout``, an hour by
default, before it hands it out again). Redis stays the result backend.

Each home gets its own node: name, ports (AMQP from ``rabbitmq_url``, Erlang distribution at
AMQP + 20000, its own ``epmd`` at AMQP - 1303) and directory, so checkouts and test sessions on
one machine never share or stop each other's broker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import amqp  # Celery's own AMQP client (a dependency of kombu)

from shopsearch.ops.services.process import (ServiceError, ensure_port_free, pid_alive, read_pid, spawn, stop_pid,
                                             wait_until)
from shopsearch.settings import Settings

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
# consumer_timeout: a coordinator (reindex, fine-tuning) holds its message unacknowledged for hours
CONFIG = "listeners.tcp.default = {port}\nloopback_users = none\nconsumer_timeout = 604800000\n"


def _dir(settings: Settings) -> Path:
    return settings.home_path / "rabbitmq"


def host_port(settings: Settings) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(settings.broker)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def used(settings: Settings) -> bool:
    """Whether the broker is RabbitMQ on this machine (a node the project manages)."""
    return settings.broker.startswith("amqp") and host_port(settings)[0] in ("127.0.0.1", "localhost", "::1")


def _env(settings: Settings) -> dict[str, str]:
    d, (host, port) = _dir(settings), host_port(settings)
    return {**os.environ, "HOME": str(d), "RABBITMQ_NODENAME": f"shopsearch{port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": host, "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(port + 20000), "ERL_EPMD_PORT": str(port - 1303),
            "ERL_EPMD_ADDRESS": "127.0.0.1", "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"), "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"), "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid")}


def _ready(settings: Settings) -> bool:
    parts = urllib.parse.urlsplit(settings.broker)
    conn = amqp.Connection(f"{parts.hostname}:{parts.port or 5672}", userid=parts.username or "guest",
                           password=parts.password or "guest", connect_timeout=1)
    try:
        conn.connect()
        return True
    finally:
        conn.collect()


def start(settings: Settings) -> dict:
    """Start the node if the broker is a local RabbitMQ and it does not run; idempotent."""
    if not used(settings):
        return status(settings)
    d = _dir(settings)
    pidfile, log = d / "server.pid", d / "server.log"
    if read_pid(pidfile):
        wait_until(lambda: _ready(settings), settings.startup_timeout, "RabbitMQ", log=log)
        return status(settings)
    host, port = host_port(settings)
    ensure_port_free("rabbitmq", host, port)
    if not SERVER.exists():
        raise ServiceError("rabbitmq-server is not installed: apt-get install rabbitmq-server (./run does this as root)")
    d.mkdir(parents=True, exist_ok=True)
    (d / "rabbitmq.conf").write_text(CONFIG.format(port=port))
    (d / "rabbitmq-env.conf").write_text("")
    (d / "enabled_plugins").write_text("[].\n")
    cookie = d / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text(os.urandom(16).hex())
        cookie.chmod(0o400)
    proc = spawn([str(SERVER)], log, env=_env(settings), cwd=d)
    pidfile.write_text(str(proc.pid))
    wait_until(lambda: _ready(settings), max(settings.startup_timeout, 60), f"RabbitMQ at {host}:{port}",
               log=log, alive=lambda: proc.poll() is None)
    return status(settings)


def stop(settings: Settings) -> bool:
    """Stop the node this home started (and its own epmd); True if one was running."""
    pid = read_pid(_dir(settings) / "server.pid")
    if not pid:
        return False
    stop_pid(pid, timeout=60)
    if shutil.which("epmd"):
        subprocess.run(["epmd", "-kill"], env=_env(settings), capture_output=True)
    return True


def status(settings: Settings) -> dict:
    info = {"service": "rabbitmq", "url": settings.broker, "pid": read_pid(_dir(settings) / "server.pid"),
            "managed": used(settings)}
    if not settings.broker.startswith("amqp"):
        info.update(running=True, note="the broker is Redis (broker_url)")
        return info
    try:
        info["running"] = _ready(settings)
    except Exception as e:  # refused, or amqp's own errors (a refused login): not running for us
        info.update(running=False, error=str(e))
    return info


def is_running(settings: Settings) -> bool:
    pid = read_pid(_dir(settings) / "server.pid")
    return bool(pid and pid_alive(pid))
