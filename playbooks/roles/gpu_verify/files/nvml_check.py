"""Print one JSON line per GPU as NVML sees it; exit 1 when NVML cannot start or finds none."""

import json
import sys

import pynvml

try:
    pynvml.nvmlInit()
    count = pynvml.nvmlDeviceGetCount()
except pynvml.NVMLError as exc:
    sys.exit(f"NVML: {exc}")
if count == 0:
    sys.exit("NVML: no GPU found")
for index in range(count):
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    print(json.dumps({"index": index, "name": pynvml.nvmlDeviceGetName(handle),
                      "memory_mib": memory.total // 2**20}))
pynvml.nvmlShutdown()
