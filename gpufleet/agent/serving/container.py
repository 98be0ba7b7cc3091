"""SageMaker's bring-your-own-container serving contract, run with a real container runtime: an
endpoint's ``image:`` is started as ``<runtime> run ... IMAGE serve``, as SageMaker starts it.

- The model version's verified, unpacked artifact is mounted read-only at ``/opt/ml/model``.
- The container listens on port 8080 (``GET /ping``, ``POST /invocations``), published on the host's
  loopback only, on a port of its own: two versions' containers run side by side during a hot swap,
  and the agent itself may hold 8080 on the host. So serving containers use the runtime's default
  (bridge) network, never ``containers.network``.
- The agent stays the endpoint: it answers the SageMaker contract on its own port and forwards
  ``/invocations`` (body, ``Content-Type``, ``Accept``, ``X-Amzn-SageMaker-Custom-Attributes``; the
  container's status, body, content type and custom attributes come back), and its ``/ping`` is the
  container's ``/ping`` plus its own health (GPU faults, drain).
- GPUs come through the NVIDIA container toolkit's CDI spec where the host has one (``gpu_args``).
- The container's output goes to the agent's log, one ``container_output`` event per line.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http.client
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gpufleet.agent.containers import (
    AGENT_LABEL,
    ContainerError,
    ensure_image,
    gpu_args,
    runtime_command,
    runtime_env,
    stop_container,
)
from gpufleet.agent.serving.events import emit
from gpufleet.agent.serving.upstream import Upstream, UpstreamError
from gpufleet.aws import AwsClients
from gpufleet.ports import free_port
from gpufleet.schema.container_settings import ContainerSettings

CONTAINER_PORT = 8080          # SageMaker's serving contract
MODEL_MOUNT = "/opt/ml/model"
STOP_GRACE_S = 10.0            # stopped only after its requests drained: the grace is for its own cleanup
_PING_TIMEOUT_S = 2.0
_TAIL_LINES = 20
# InvokeEndpoint's CustomAttributes: an opaque value SageMaker passes to the container and back, verbatim, of at
# most 1024 visible US-ASCII characters (RFC 7230 field value): the API model caps it at 1024, so SageMaker
# refuses a longer one as a validation error (400) before any container sees it.
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
CUSTOM_ATTRIBUTES_MAX = 1024


def custom_attributes_problem(value: bytes) -> str | None:
    """Why ``value`` is not a valid custom attributes header, or None."""
    if len(value) > CUSTOM_ATTRIBUTES_MAX:
        return f"{len(value)} characters, more than {CUSTOM_ATTRIBUTES_MAX}"
    if any(not (0x20 <= byte < 0x7F or byte == 0x09) for byte in value):
        return "characters other than visible US-ASCII"
    return None


@dataclass(frozen=True)
class ContainerAnswer:
    status: int
    body: bytes
    content_type: bytes
    custom_attributes: bytes | None   # the container's own, when it set a valid one


class ContainerCallFailed(Exception):
    """The container did not answer a forwarded request: ``status`` is what the client gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class ServingImage:
    """An endpoint's image (resolved) and how this agent runs it."""

    clients: AwsClients      # an ECR login, when the image must be pulled
    settings: ContainerSettings
    image: str
    agent: str               # the agent's instance id: labels its containers
    start_timeout_s: float   # for the container's /ping to answer 200

    def argv(self, name: str, model_dir: Path, port: int) -> list[str]:
        return [*runtime_command(self.settings), "run", "--rm", "--name", name,
                "--label", f"{AGENT_LABEL}={self.agent}", "--pull", "never",
                "--publish", f"127.0.0.1:{port}:{CONTAINER_PORT}", "--shm-size", self.settings.shm_size,
                *gpu_args(self.settings), "--volume", f"{model_dir}:{MODEL_MOUNT}:ro", self.image, "serve"]

    def start(self, model: str, version: int, model_dir: Path) -> ServingContainer:
        """Start ``model:version``'s container and wait for its ``/ping``; ContainerError if the image is
        not there (nor pullable) or the container never answers."""
        ensure_image(self.clients, self.settings, self.image)
        name = f"gpufleet-serve-{model}-{version}-{secrets.token_hex(3)}"
        port = free_port()
        container = ServingContainer(self.settings, name, port)
        container.start(self.argv(name, model_dir, port))
        try:
            container.wait_ready(self.start_timeout_s)
        except ContainerError:
            container.stop()
            raise
        return container


class ServingContainer:
    """One model version's running container, and the agent's HTTP client to it."""

    def __init__(self, settings: ContainerSettings, name: str, port: int) -> None:
        self.settings, self.name, self.port = settings, name, port
        self.proc: subprocess.Popen[bytes] | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.healthy = False
        self._upstream: Upstream | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, argv: list[str]) -> None:
        try:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=runtime_env(self.settings))
        except OSError as exc:
            raise ContainerError(f"could not run {argv[0]}: {exc}") from None
        emit("container_started", container=self.name, port=self.port)
        threading.Thread(target=self._pump_output, name=f"output-{self.name}", daemon=True).start()

    def _pump_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            emit("container_output", container=self.name, line=line)
        emit("container_exited", container=self.name, code=self.proc.wait())

    def wait_ready(self, timeout_s: float) -> None:
        """Until ``/ping`` answers 200; ContainerError (with its last lines) if it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                time.sleep(0.2)   # let the output pump catch the last lines
                raise ContainerError(f"container {self.name} exited with code {self.proc.returncode} "
                                     f"before /ping answered; last lines: {' | '.join(self.tail)}")
            if self._ping_once():
                self.healthy = True
                return
            time.sleep(0.2)
        raise ContainerError(f"container {self.name}: /ping did not answer 200 within {timeout_s:g} s "
                             "(raise serving.container_start_timeout_s, or fix the image's serve)")

    def _ping_once(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=_PING_TIMEOUT_S)
        try:
            conn.request("GET", "/ping")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def _client(self) -> Upstream:
        """The client on the serving loop (made there on first use: its connections belong to that loop)."""
        if self._upstream is None:
            self._loop, self._upstream = asyncio.get_running_loop(), Upstream(self.port)
        return self._upstream

    async def ping(self) -> bool:
        try:
            answer = await asyncio.wait_for(self._client().request("GET", "/ping"), _PING_TIMEOUT_S)
            self.healthy = answer.status == 200
        except (UpstreamError, TimeoutError):
            self.healthy = False
        return self.healthy

    async def invoke(self, body: bytes, content_type: str | None, accept: str | None,
                     custom_attributes: str | None, timeout_s: float) -> ContainerAnswer:
        """Forward one request (``custom_attributes`` already checked: ``custom_attributes_problem``)."""
        headers = [(k, v) for k, v in (("content-type", content_type), ("accept", accept),
                                       (CUSTOM_ATTRIBUTES, custom_attributes)) if v is not None]
        try:
            answer = await asyncio.wait_for(self._client().request("POST", "/invocations", headers, body), timeout_s)
        except TimeoutError:
            raise ContainerCallFailed(504, f"container: no answer within {timeout_s:g} s "
                                           "(raise serving.request_timeout_s or send less)") from None
        except UpstreamError as exc:
            raise ContainerCallFailed(503, f"container: not answering ({exc})") from None
        attributes = answer.headers.get(CUSTOM_ATTRIBUTES.lower().encode())
        if attributes is not None and (problem := custom_attributes_problem(attributes)):
            # The inference itself is good: the client gets it without the header, the operator the reason.
            emit("custom_attributes_dropped", container=self.name, reason=f"{CUSTOM_ATTRIBUTES}: {problem}")
            attributes = None
        return ContainerAnswer(answer.status, answer.body,
                               answer.headers.get(b"content-type", b"application/octet-stream"), attributes)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop the container (its requests drained first: see ``ModelSlot.swap``) and close the client."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ContainerError):
                stop_container(self.settings, self.name, grace_s)
            try:
                self.proc.wait(grace_s + 5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._upstream is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):   # the loop already closed: so are its connections
                self._loop.call_soon_threadsafe(self._upstream.close)
        emit("container_stopped", container=self.name)
