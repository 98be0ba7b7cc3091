"""Watch this variant's entry in the endpoints table and hot-swap the model it names.

Swap order: fetch and verify, load, warm up, switch atomically, drain, unload. A model that fails any
step before the switch is refused and the current one keeps serving; the same version is not retried
until the record names a different one (a tampered artifact stays refused). Only a version the operator
approved loads, and only the artifact the approval pinned (its URI and sha256, from the approvals table,
which hosts cannot write): a changed models-table record or a replaced artifact is refused. An endpoint
with an ``image:`` loads a version by starting its container on the verified artifact and waiting for
the container's ``/ping`` (``serving.container``); the swap and drain are the same.
"""

from __future__ import annotations

import gc
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from gpufleet.agent.containers import ContainerError
from gpufleet.agent.requirements import RequirementsError, activate_model_requirements, cache_root
from gpufleet.agent.serving.artifacts import ArtifactRejected, fetch_model
from gpufleet.agent.serving.container import ServingImage
from gpufleet.agent.serving.events import emit
from gpufleet.agent.serving.handler import HandlerLoadError, load_handler
from gpufleet.agent.serving.metrics import ServingMetrics
from gpufleet.agent.serving.models import ContainerModel, LoadedModel, ModelSlot, ServedModel, build_model
from gpufleet.schema.pip_settings import PipSettings
from gpufleet.schema.serving_settings import ServingSettings
from gpufleet.store.approvals import approved_artifact


@dataclass(frozen=True)
class Target:
    model: str
    version: int


class ModelWatcher:
    def __init__(self, dynamodb: Any, s3: Any, tables: Any, endpoint: str, variant: str, work_root: Path,
                 slot: ModelSlot, metrics: ServingMetrics, options: ServingSettings,
                 device: Any, pip: PipSettings | None = None, image: ServingImage | None = None) -> None:
        self.dynamodb, self.s3, self.tables = dynamodb, s3, tables
        self.endpoint, self.variant, self.work_root = endpoint, variant, work_root
        self.slot, self.metrics, self.options = slot, metrics, options
        self.device, self.pip = device, pip or PipSettings()
        self.image = image   # the endpoint's image: each version runs in its own container
        self.refused: Target | None = None

    def wanted(self) -> Target | None:
        item = self.dynamodb.get_item(TableName=self.tables.endpoints, Key={"endpoint": {"S": self.endpoint}},
                                      ConsistentRead=True).get("Item")
        variant = (item or {}).get("variants", {}).get("M", {}).get(self.variant, {}).get("M")
        if not variant or "model" not in variant or "version" not in variant:
            return None
        return Target(variant["model"]["S"], int(Decimal(variant["version"]["N"])))

    def check_once(self) -> bool:
        """Load and switch to the wanted model if it changed; True if a swap happened."""
        target = self.wanted()
        if target is None or target == self.refused or (target.model, target.version) == self.slot.identity():
            return False
        try:
            model = self.load(target)
        except (ArtifactRejected, HandlerLoadError, LookupError, ContainerError) as exc:
            self._refuse(target, str(exc))
            return False
        except RequirementsError as exc:
            self._refuse(target, f"code/requirements.txt: pip failed: {exc}")
            return False
        except Exception as exc:   # warm-up or model_fn raised: the handler's bug, not ours
            self._refuse(target, f"{type(exc).__name__}: {exc}")
            return False
        old = self.slot.swap(model, self.options.drain_timeout_s)
        # Keep the long-lived heap (boto3's service models, the model itself) out of the cyclic GC:
        # full collections over it stalled the loop for tens of ms (p99 of 55 ms at 1 connection).
        gc.freeze()
        self.metrics.model_loads.inc()
        emit("model_swapped", model=target.model, version=target.version,
             previous=f"{old.name}:{old.version}" if old else None)
        return True

    def load(self, target: Target) -> ServedModel:
        approved = approved_artifact(self.dynamodb, self.tables.approvals, target.model, target.version)
        if approved is None:
            raise LookupError(f"approvals table: {target.model}:{target.version} is not approved "
                              f"(approve it with `gpufleet model approve {target.model}:{target.version}`)")
        directory = self.work_root / "models" / target.model / str(target.version)
        fetch_model(self.s3, *approved, directory)
        if self.image is not None:
            return self._start_container(target, directory)
        return self._load_in_process(target, directory)

    def _start_container(self, target: Target, directory: Path) -> ContainerModel:
        """The version's container, answering /ping (its image brings its own dependencies)."""
        assert self.image is not None
        try:
            container = self.image.start(target.model, target.version, directory)
        except ContainerError:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return ContainerModel(target.model, target.version, container, directory)

    def _load_in_process(self, target: Target, directory: Path) -> LoadedModel:
        activate_model_requirements(directory / "code", cache_root(self.pip, self.work_root), self.pip)
        handler = load_handler(directory, self.device)
        model = build_model(target.model, target.version, handler, self.options.max_batch_size,
                            self.options.max_batch_delay_ms / 1000.0, self.metrics.batch_done, directory)
        try:
            self.slot.run_warmup(model)
        except Exception:
            model.unload()
            raise
        return model

    def _refuse(self, target: Target, reason: str) -> None:
        self.refused = target
        self.metrics.model_load_failures.inc()
        emit("model_refused", model=target.model, version=target.version, reason=reason)

    def discard_stale_models(self) -> None:
        """Remove what an earlier agent process left under ``models/``: a model directory is only good while
        the process that unpacked it serves it, and one killed mid-swap leaves its versions and a
        half-downloaded ``.fetch-*`` folder behind (the next load fetches and verifies again)."""
        models = self.work_root / "models"
        if not models.exists():
            return
        try:
            shutil.rmtree(models)
        except OSError as exc:   # loads still work: each fetch replaces its version's directory
            emit("stale_models_not_discarded", path=str(models), error=str(exc))
        else:
            emit("stale_models_discarded", path=str(models))

    def run(self, stop: threading.Event, on_error: Callable[[Exception], None] | None = None) -> None:
        self.discard_stale_models()
        while not stop.is_set():
            try:
                self.check_once()
            except Exception as exc:   # the table may be briefly unreachable: keep serving, retry
                emit("watch_failed", error=f"{type(exc).__name__}: {exc}")
                if on_error:
                    on_error(exc)
            stop.wait(self.options.poll_interval_s)
