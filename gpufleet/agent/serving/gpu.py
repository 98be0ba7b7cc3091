"""GPU telemetry through NVML, and the fault signal that marks the instance unhealthy.

Without NVML (no GPU, no driver, no library) telemetry reports ``unavailable`` with the reason and is
never an error. A fault is a lost GPU, a rise in uncorrectable ECC errors since start, or a critical
XID event of the kinds that need a reset or replacement.
"""

from __future__ import annotations

import importlib
from typing import Any

# XIDs that mean the hardware needs a reset or a replacement, not an application bug:
# 48 double-bit ECC, 63/64 row remapping, 74 NVLink, 79 fell off the bus, 92 high single-bit ECC rate,
# 94/95 contained/uncontained ECC, 119/120 GSP errors.
FATAL_XIDS = frozenset({48, 63, 64, 74, 79, 92, 94, 95, 119, 120})


class GpuTelemetry:
    def __init__(self, nvml: Any = None) -> None:
        self.nvml = nvml
        self.reason = ""
        self.handles: list[Any] = []
        self.ecc_baseline: list[int | None] = []
        self.xids: list[int] = []
        self.events: Any = None
        self.fault: str | None = None
        try:
            self.nvml = nvml or importlib.import_module("pynvml")
            self.nvml.nvmlInit()
            count = self.nvml.nvmlDeviceGetCount()
            self.handles = [self.nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception as exc:   # NVMLError_LibraryNotFound / DriverNotLoaded / ImportError: no GPU here
            self.reason = f"{type(exc).__name__}: {exc}".strip()
            self.handles = []
            return
        if not self.handles:
            self.reason = "NVML found no GPU"
        self.ecc_baseline = [self._ecc(h) for h in self.handles]
        self.xids = [0] * len(self.handles)
        self._register_xid_events()

    @property
    def available(self) -> bool:
        return bool(self.handles)

    def sample(self) -> dict[str, Any]:
        """Per-GPU readings, or ``{"status": "unavailable", "reason": ...}``."""
        if not self.available:
            return {"status": "unavailable", "reason": self.reason, "gpus": []}
        self._drain_xid_events()
        gpus = [self._device(i, h) for i, h in enumerate(self.handles)]
        return {"status": "available", "reason": "", "gpus": gpus, "fault": self.fault}

    def _device(self, index: int, handle: Any) -> dict[str, Any]:
        nv = self.nvml
        reading: dict[str, Any] = {"index": index, "xid_errors": self.xids[index],
                                   "uuid": self._read(nv.nvmlDeviceGetUUID, handle) or str(index)}
        util = self._read(nv.nvmlDeviceGetUtilizationRates, handle)
        memory = self._read(nv.nvmlDeviceGetMemoryInfo, handle)
        power = self._read(nv.nvmlDeviceGetPowerUsage, handle)
        reading.update(
            utilization=getattr(util, "gpu", None), memory_used=getattr(memory, "used", None),
            memory_total=getattr(memory, "total", None),
            temperature=self._read(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU),
            power=power / 1000.0 if power is not None else None, ecc_uncorrected=self._ecc(handle))
        baseline, ecc = self.ecc_baseline[index], reading["ecc_uncorrected"]
        if ecc is not None and baseline is not None and ecc > baseline:
            self._set_fault(f"GPU {index}: {ecc - baseline} new uncorrectable ECC errors")
        return reading

    def _read(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.nvml.NVMLError as exc:
            if isinstance(exc, getattr(self.nvml, "NVMLError_GpuIsLost", ())):
                self._set_fault(f"GPU lost ({exc})")
            return None   # NotSupported on this board, or lost: reported as missing, not an error

    def _ecc(self, handle: Any) -> int | None:
        nv = self.nvml
        value = self._read(nv.nvmlDeviceGetTotalEccErrors, handle, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                           nv.NVML_VOLATILE_ECC)
        return int(value) if value is not None else None

    def _register_xid_events(self) -> None:
        nv = self.nvml
        try:
            self.events = nv.nvmlEventSetCreate()
            for handle in self.handles:
                nv.nvmlDeviceRegisterEvents(handle, nv.nvmlEventTypeXidCriticalError, self.events)
        except nv.NVMLError:
            self.events = None   # not supported (some vGPUs): ECC and lost-GPU checks still apply

    def _drain_xid_events(self) -> None:
        if self.events is None:
            return
        nv = self.nvml
        while True:
            try:
                event = nv.nvmlEventSetWait_v2(self.events, 0)
            except nv.NVMLError:   # Timeout: no more events
                return
            index = next((i for i, h in enumerate(self.handles) if h == event.device), 0)
            self.xids[index] += 1
            if int(event.eventData) in FATAL_XIDS:
                self._set_fault(f"GPU {index}: XID {event.eventData}")

    def _set_fault(self, problem: str) -> None:
        self.fault = self.fault or problem
