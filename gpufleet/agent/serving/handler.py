"""The SageMaker PyTorch handler contract: ``code/inference.py`` with ``model_fn``, ``input_fn``,
``predict_fn`` and ``output_fn``; any function it leaves out, and a model dir without it, gets the
toolkit's default (a TorchScript ``model.pt``).

Batching lives here too, because only the handler knows how its inputs combine: inputs that are
tensors or arrays with the same trailing shape are concatenated along dim 0, sent through
``predict_fn`` once and split back. Anything else runs alone, and a batch that fails is retried one
request at a time so that one bad payload never fails its neighbours.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from gpufleet.agent.serving import codecs
from gpufleet.agent.serving.exported import load_default_model

HANDLER_FUNCTIONS = ("model_fn", "input_fn", "predict_fn", "output_fn")


class HandlerLoadError(Exception):
    """The model dir cannot be loaded: no ``model.pt``, or ``inference.py`` failed to import or load."""


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _defaults(device: torch.device) -> dict[str, Callable[..., Any]]:
    def model_fn(model_dir: str) -> Any:
        try:
            return load_default_model(Path(model_dir), device)   # model.pt2 (torch.export) or model.pt
        except FileNotFoundError as exc:
            raise HandlerLoadError(str(exc)) from None

    def input_fn(body: bytes, content_type: str) -> torch.Tensor:
        return torch.from_numpy(codecs.decode(body, content_type)).to(device)

    def predict_fn(data: torch.Tensor, model: Any) -> Any:
        with torch.inference_mode():
            try:
                return model(data.to(device))
            except RuntimeError as exc:  # TorchScript reports a wrong input shape as a RuntimeError
                first = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc).__name__
                raise codecs.BadPayload(f"body: the model rejects input of shape {tuple(data.shape)} "
                                        f"({first})") from None

    def output_fn(prediction: Any, accept: str) -> bytes:
        return codecs.encode(prediction, accept)

    return {"model_fn": model_fn, "input_fn": input_fn, "predict_fn": predict_fn, "output_fn": output_fn}


def _import_inference(script: Path) -> ModuleType:
    """Import ``code/inference.py`` under a unique name, with ``code/`` importable for its helpers.

    The helpers are imported as top-level modules (``import helpers``), as SageMaker allows, but kept
    out of ``sys.modules`` afterwards: otherwise the next version's ``import helpers`` would get this
    version's cached module. Modules of the same names imported before are hidden meanwhile.
    """
    name = "gpufleet_inference_" + hashlib.sha256(str(script).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, script)
    if spec is None or spec.loader is None:
        raise HandlerLoadError(f"{script}: not importable")
    module = importlib.util.module_from_spec(spec)
    local = _local_module_names(script.parent)
    hidden = {n: m for n, m in sys.modules.items() if n.split(".", 1)[0] in local}
    for n in hidden:
        del sys.modules[n]
    sys.path.insert(0, str(script.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise HandlerLoadError(f"{script}: import failed ({type(exc).__name__}: {exc})") from exc
    finally:
        sys.path.remove(str(script.parent))
        for n in [n for n in sys.modules if n.split(".", 1)[0] in local]:
            del sys.modules[n]     # this version's helpers: its inference module holds them
        sys.modules.update(hidden)
    return module


def _local_module_names(code_dir: Path) -> set[str]:
    """Top-level names that ``code_dir`` provides: ``name.py`` files and package folders."""
    return {p.stem if p.is_file() else p.name for p in code_dir.iterdir()
            if (p.is_file() and p.suffix == ".py" and p.stem != "inference")
            or (p.is_dir() and (p / "__init__.py").is_file())}


@dataclass
class Handler:
    model: Any
    input_fn: Callable[[bytes, str], Any]
    predict_fn: Callable[[Any, Any], Any]
    output_fn: Callable[[Any, str], Any]
    custom: bool
    device: torch.device

    def encode(self, prediction: Any, accept: str) -> tuple[bytes, str]:
        """``output_fn`` may return bytes, str, or (body, content_type) as the toolkit allows."""
        out = self.output_fn(prediction, accept)
        content_type = accept
        if isinstance(out, tuple):
            out, content_type = out
        if isinstance(out, str):
            out = out.encode()
        if not isinstance(out, bytes | bytearray | memoryview):
            raise TypeError(f"output_fn returned {type(out).__name__}; return bytes or str")
        return bytes(out), content_type

    def run_batch(self, items: list[Any]) -> list[Any]:
        """Predictions for ``items`` in order; an exception object stands in for a failed item."""
        if len(items) == 1:
            return [self._predict_one(items[0])]
        results: list[Any] = [None] * len(items)
        for indexes in _groups(items):
            if len(indexes) == 1:
                results[indexes[0]] = self._predict_one(items[indexes[0]])
                continue
            try:
                outputs = self._predict_many([items[i] for i in indexes])
            except Exception:
                outputs = [self._predict_one(items[i]) for i in indexes]
            for i, out in zip(indexes, outputs, strict=True):
                results[i] = out
        return results

    def _predict_one(self, item: Any) -> Any:
        try:
            return self.predict_fn(item, self.model)
        except Exception as exc:
            return exc

    def _predict_many(self, group: list[Any]) -> list[Any]:
        sizes = [int(x.shape[0]) for x in group]
        joined = torch.cat(group) if isinstance(group[0], torch.Tensor) else np.concatenate(group)
        out = self.predict_fn(joined, self.model)
        if not isinstance(out, torch.Tensor | np.ndarray) or out.ndim == 0 or out.shape[0] != sum(sizes):
            raise ValueError("prediction does not keep the batch dimension")  # caller retries one by one
        parts, start = [], 0
        for size in sizes:
            parts.append(out[start:start + size])
            start += size
        return parts


def _batch_key(item: Any) -> tuple[Any, ...] | None:
    if isinstance(item, torch.Tensor) and item.dim() >= 2:
        return ("t", tuple(item.shape[1:]), item.dtype, item.device)
    if isinstance(item, np.ndarray) and item.ndim >= 2:
        return ("n", item.shape[1:], item.dtype)
    return None


def _groups(items: list[Any]) -> list[list[int]]:
    groups: dict[Any, list[int]] = {}
    alone: list[list[int]] = []
    for i, item in enumerate(items):
        key = _batch_key(item)
        if key is None:
            alone.append([i])
        else:
            groups.setdefault(key, []).append(i)
    return [*groups.values(), *alone]


def load_handler(model_dir: Path, device: torch.device) -> Handler:
    """Load a SageMaker model dir: ``code/inference.py`` functions over the TorchScript defaults."""
    functions = _defaults(device)
    script = model_dir / "code" / "inference.py"
    custom = script.is_file()
    if custom:
        module = _import_inference(script)
        found = {n: getattr(module, n) for n in HANDLER_FUNCTIONS if callable(getattr(module, n, None))}
        functions.update(found)
    try:
        model = functions["model_fn"](str(model_dir))
    except HandlerLoadError:
        raise
    except Exception as exc:
        raise HandlerLoadError(f"{model_dir}: model_fn failed ({type(exc).__name__}: {exc})") from exc
    return Handler(model=model, input_fn=functions["input_fn"], predict_fn=functions["predict_fn"],
                   output_fn=functions["output_fn"], custom=custom, device=device)
