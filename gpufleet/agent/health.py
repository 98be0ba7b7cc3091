"""``GET /healthz`` on the agent's health port, for every role: systemd checks, Ansible and the ALB-less local mode.

A stdlib server on a thread: the training role must not pay for an ASGI stack.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

StatusFn = Callable[[], dict[str, Any]]


def start_health_server(port: int, status: StatusFn, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve ``status()`` as JSON on ``/healthz`` (200 while ``status()['healthy']``, else 503)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/healthz":
                self.send_error(404)
                return
            body = status()
            payload = json.dumps(body).encode()
            self.send_response(200 if body.get("healthy") else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the agent logs JSON itself
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
    return server
