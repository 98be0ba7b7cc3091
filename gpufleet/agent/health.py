"""``GET /healthz`` on the agent's health port, for every role: systemd checks, Ansible and the ALB-less local mode.

A stdlib server on a thread: the training role must not pay for an ASGI stack.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gpufleet.errors import RuntimeFailure

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

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:  # in use, or not ours to take: say so in one line, not a traceback
        raise RuntimeFailure("health", f"could not listen on port {port}: {exc.strerror or exc}",
                             "free the port or set health_port in the agent config") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
    return server
