"""The serving role's main: the HTTP server, the model watcher, telemetry and data capture.

``run`` returns when ``stop`` is set (SIGTERM): ``/ping`` turns 503, the listener closes, in-flight
requests finish within ``serving.drain_timeout_s``, the endpoint image's container (if any) stops, capture
and metrics flush, and it returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Generator
from pathlib import Path

import uvicorn

from gpufleet.agent.containers import ContainerError, agent_image, agent_settings, remove_leftovers
from gpufleet.agent.health import start_health_server
from gpufleet.agent.identity import resolve_identity
from gpufleet.agent.logs import configure_logging
from gpufleet.agent.serving.app import HealthState, Limits, ServingApp
from gpufleet.agent.serving.capture import DataCapture
from gpufleet.agent.serving.container import ServingImage
from gpufleet.agent.serving.events import emit
from gpufleet.agent.serving.gpu import GpuTelemetry
from gpufleet.agent.serving.handler import pick_device
from gpufleet.agent.serving.metrics import ServingMetrics
from gpufleet.agent.serving.models import ContainerModel, ModelSlot
from gpufleet.agent.serving.telemetry import Telemetry
from gpufleet.agent.serving.watcher import ModelWatcher
from gpufleet.aws import AwsClients
from gpufleet.errors import RuntimeFailure
from gpufleet.schema.agent_config import AgentConfig

GPU_POLL_S = 5.0


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the agent's ``stop`` event drives shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def run(config: AgentConfig, stop: threading.Event) -> int:
    assert config.endpoint and config.variant  # AgentConfig validates this for the serving role
    options, background_stop = config.serving, threading.Event()
    device = pick_device(options.device)
    slot, metrics, health = ModelSlot(), ServingMetrics(), HealthState()
    aws = AwsClients.for_agent(config)
    s3 = aws.s3
    capture = (DataCapture(s3, config.team.buckets.capture, config.endpoint, config.variant,
                           options.capture_percent, options.capture_queue_size)
               if options.capture_percent > 0 else None)
    ident = resolve_identity(config).instance_id
    configure_logging({"instance_id": ident, "team": config.team.team, "role": "serving",
                       "endpoint": config.endpoint, "variant": config.variant})
    telemetry = Telemetry(aws.cloudwatch, aws.client("autoscaling"), GpuTelemetry(),
                          metrics, health, {"Team": config.team.team, "Endpoint": config.endpoint,
                                            "Variant": config.variant}, ident)
    app = ServingApp(slot, metrics, Limits(options.max_payload_bytes, options.request_timeout_s),
                     health, capture, lambda: telemetry.last_gpu)
    watcher = ModelWatcher(aws.client("dynamodb"), s3, config.team.tables, config.endpoint,
                           config.variant, Path(config.work_root), slot, metrics, options, device,
                           pip=config.pip, image=_serving_image(config, aws, ident))
    threads = [threading.Thread(target=watcher.run, args=(background_stop,), name="watcher", daemon=True),
               threading.Thread(target=telemetry.run, name="telemetry", daemon=True,
                                args=(background_stop, GPU_POLL_S, options.metrics_interval_s))]
    for thread in threads:
        thread.start()
    health_server = start_health_server(config.health_port, lambda: {
        "healthy": slot.current is not None and slot.current.healthy and health.problem is None,
        "role": "serving",
        "model": ":".join(map(str, slot.identity() or ())) or None,
        "problem": health.problem, "gpu": telemetry.last_gpu.get("status")}) if config.health_port else None
    emit("serving_starting", endpoint=config.endpoint, variant=config.variant, port=config.serving_port,
         device=str(device), gpu=telemetry.last_gpu["status"], instance_id=ident)
    server = _Server(uvicorn.Config(
        app, host="127.0.0.1" if config.local else "0.0.0.0", port=config.serving_port,
        log_level="warning", access_log=False, lifespan="off",
        timeout_graceful_shutdown=int(config.serving.drain_timeout_s) or 1, timeout_keep_alive=65))
    try:
        # uvloop and httptools when installed (uvicorn's "auto"), as ``uvicorn.run`` would pick them.
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(_serve(server, app, config, stop, health))
    finally:
        background_stop.set()
        if isinstance(slot.current, ContainerModel):   # drained with the server: the container goes too
            slot.current.unload()
        if capture:
            capture.close()
        telemetry.publish()
        if health_server:
            health_server.shutdown()
        emit("serving_stopped", served=metrics.served())
    return 0


def _serving_image(config: AgentConfig, aws: AwsClients, agent: str) -> ServingImage | None:
    """The endpoint's image (SageMaker's serve contract), or None: models serve in this process. Containers
    an earlier agent of this instance left behind are removed first."""
    assert config.endpoint
    front = config.team.endpoints.get(config.endpoint)
    if front is None or front.image is None:
        return None
    try:
        image = agent_image(config, front.image)
        remove_leftovers(agent_settings(config), agent)
    except ContainerError as exc:
        raise RuntimeFailure("serving", f"image: {exc}", "fix the endpoint's image: or the agent's "
                             "containers: settings") from None
    emit("serving_image", image=image)
    return ServingImage(aws, agent_settings(config), image, agent, config.serving.container_start_timeout_s)


async def _serve(server: uvicorn.Server, app: ServingApp, config: AgentConfig, stop: threading.Event,
                 health: HealthState) -> None:

    async def watch_stop() -> None:
        while not stop.is_set() and not server.should_exit:
            await asyncio.sleep(0.1)
        health.fail("shutting down")
        emit("draining", in_flight=app.in_flight)
        server.should_exit = True

    watcher = asyncio.create_task(watch_stop())
    try:
        await server.serve()
    except SystemExit:   # uvicorn exits when it cannot bind
        raise RuntimeFailure("serving", f"could not listen on port {config.serving_port}",
                             "free the port or set serving_port in the agent config") from None
    finally:
        watcher.cancel()
