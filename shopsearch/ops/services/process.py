"""Small process helpers shared by the service launchers: pid files, ports, waiting, log tails."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable
from shopsearch.errors import ServiceError
from shopsearch.files import pid_alive


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that it does not exist."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def read_pid(pidfile: Path) -> int | None:
    """The pid in a pid file if that process is alive, else None."""
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_port_free(name: str, host: str, port: int) -> None:
    """Raise a clear error when another process already listens on the port we need."""
    if port_open(host, port):
        raise ServiceError(
            f"{name}: port {host}:{port} is already taken by another process that is not "
            f"shopsearch's {name}. Stop that process, or choose another port in the settings."
        )


def wait_until(check: Callable[[], bool], timeout: float, what: str, log: Path | None = None,
               alive: Callable[[], bool] | None = None, interval: float = 0.5) -> None:
    """Poll ``check`` until it is true; on timeout (or when the process died) raise with the log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # the service is not up yet: any error means "not yet"
            pass
        if alive is not None and not alive():
            raise ServiceError(f"{what}: the process exited while starting.\n--- log tail ({log}) ---\n{tail(log) if log else ''}")
        time.sleep(interval)
    raise ServiceError(f"{what}: not ready after {timeout:.0f}s.\n--- log tail ({log}) ---\n{tail(log) if log else ''}")


def spawn(argv: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start a long-running process in its own session, output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")
    try:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)
    finally:
        out.close()


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
