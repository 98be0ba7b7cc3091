"""A small fake EC2 instance metadata service (IMDSv2), for what neither this machine nor moto has:
the ``spot/instance-action`` and ``autoscaling/target-lifecycle-state`` paths. Tests flip them to
announce a spot interruption or a scale-in. Every read demands the session token, as IMDSv2 does.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeImds:
    def __init__(self, instance_id: str = "i-0fake", local_ipv4: str = "127.0.0.1") -> None:
        self.token = secrets.token_hex(8)
        self.paths: dict[str, str] = {"meta-data/instance-id": instance_id, "meta-data/local-ipv4": local_ipv4,
                                      "meta-data/autoscaling/target-lifecycle-state": "InService"}
        self.tokenless_reads = 0
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    self._send(200, imds.token)
                else:
                    self._send(400, "")

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token") != imds.token:
                    imds.tokenless_reads += 1
                    self._send(401, "")
                    return
                value = imds.paths.get(self.path.removeprefix("/latest/"))
                self._send(200, value) if value is not None else self._send(404, "")

            def _send(self, code: int, body: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def announce_spot_interruption(self) -> None:
        self.paths["meta-data/spot/instance-action"] = json.dumps(
            {"action": "terminate", "time": "2026-11-26T20:00:00Z"})

    def announce_scale_in(self) -> None:
        self.paths["meta-data/autoscaling/target-lifecycle-state"] = "Terminated"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
