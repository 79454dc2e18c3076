"""``shopsearch serve``: the middleware's two faces, each a gunicorn server on its own listener.

The public face (``proxy_host:proxy_port``) is the one to expose to shoppers; the internal face
(``internal_host:internal_port``) serves the shop's own systems (pass-through, opt-in, admin) and
belongs on a private network. Both use the serving model of ``plugin/serving.py``
(``proxy_workers`` x ``proxy_threads``). ``./run demo`` and docker/ start them the same way.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from shopsearch.ops.services.process import wait_until
from shopsearch.settings import Settings

FACES = ("public", "internal")


@dataclass
class Face:
    """One face's server: its name, address and gunicorn process."""
    name: str
    url: str
    process: subprocess.Popen


def address(settings: Settings, face: str) -> tuple[str, int]:
    """Where ``face`` listens."""
    if face == "public":
        return settings.proxy_host, settings.proxy_port
    return settings.internal_host, settings.internal_port


def argv(settings: Settings, face: str) -> list[str]:
    """The gunicorn command line of ``face`` (the serving config reads the rest of the settings)."""
    host, port = address(settings, face)
    return [sys.executable, "-m", "gunicorn", "-c", "python:shopsearch.plugin.serving", "-b", f"{host}:{port}",
            f"shopsearch.plugin.app:create_app(face={face!r})"]


def start(settings: Settings, faces: tuple[str, ...] = FACES, log_dir: Path | None = None,
          timeout: float = 180.0) -> list[Face]:
    """Start ``faces`` and wait until each answers ``/healthz`` (ServiceError, with the log, if one does not)."""
    started: list[Face] = []
    try:
        for face in faces:
            host, port = address(settings, face)
            log = open(log_dir / f"{face}.log", "ab") if log_dir else None
            proc = subprocess.Popen(argv(settings, face), stdout=log, stderr=subprocess.STDOUT if log else None)
            started.append(Face(face, f"http://{host}:{port}", proc))
        for face in started:
            wait_until(lambda: requests.get(f"{face.url}/healthz", timeout=2).status_code in (200, 503), timeout,
                       f"the {face.name} face", log=log_dir / f"{face.name}.log" if log_dir else None,
                       alive=lambda: face.process.poll() is None)
    except BaseException:
        stop(started)
        raise
    return started


def stop(faces: list[Face], timeout: float = 30.0) -> None:
    """Stop the faces' servers (gunicorn finishes the requests in flight)."""
    for face in faces:
        if face.process.poll() is None:
            face.process.terminate()
    for face in faces:
        try:
            face.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            face.process.kill()


def serve_forever(faces: list[Face]) -> int:
    """Wait until a face's server exits or SIGTERM/SIGINT arrives; stop the others; the exit code."""
    def _stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _stop)
    try:
        while True:
            for face in faces:
                code = face.process.poll()
                if code is not None:
                    return code
            try:
                faces[0].process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:
        return 0
    finally:
        stop(faces)
