"""The middleware's routes for the commands that act as shoppers (``simulate clicks``, ``eval personalisation``).

``middleware(settings, proxy)``: the app built in this process (``create_app`` with these
settings: the same routes, no HTTP server), or a running proxy at ``proxy``. Both answer
``get(path, params) -> JSON``, ``post(path, body) -> status``, ``flush()`` (buffered events to
OpenSearch now) and ``close()``. These commands are the shop's own backend replaying or simulating
shoppers, so they post events with the admin credential (shoppers prove themselves with the
event token of their search instead).
"""

from __future__ import annotations

import requests

from shopsearch.plugin.app import create_app
from shopsearch.settings import Settings


class InProcess:
    """The middleware app without an HTTP server: the same routes, called directly."""

    def __init__(self, settings: Settings):
        self.app = create_app(settings, face="internal")  # the shop's backend, with the admin credential
        self.http = self.app.test_client()
        self.headers = {"X-Admin-Token": settings.admin_token}

    def get(self, path, params):
        return self.http.get(path, query_string=params, headers=self.headers).get_json()

    def post(self, path, body):
        return self.http.post(path, json=body, headers=self.headers).status_code

    def flush(self):
        self.app.extensions["shopsearch.events"].flush()

    def close(self):
        self.app.extensions["shopsearch.events"].close()


class Remote:
    """A running proxy over HTTP (its own settings; it flushes events on its own schedule)."""

    def __init__(self, url: str, admin_token: str = ""):
        self.url, self.session = url.rstrip("/"), requests.Session()
        if admin_token:
            self.session.headers["X-Admin-Token"] = admin_token

    def get(self, path, params):
        return self.session.get(self.url + path, params=params, timeout=60).json()

    def post(self, path, body):
        return self.session.post(self.url + path, json=body, timeout=60).status_code

    def flush(self):
        pass

    def close(self):
        pass


def middleware(settings: Settings, proxy: str | None = None) -> InProcess | Remote:
    return Remote(proxy, settings.admin_token) if proxy else InProcess(settings)
