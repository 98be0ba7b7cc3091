"""The model a folder holds without ``code/inference.py``: a ``torch.export`` program (``model.pt2``),
the format after TorchScript (torch 2.13 deprecates ``torch.jit.load`` and ``torch.jit.script``), else
a TorchScript ``model.pt``, which SageMaker's default PyTorch toolkit expects and so stays supported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

EXPORTED_MODEL = "model.pt2"
TORCHSCRIPT_MODEL = "model.pt"


class ExportedModel:
    """An exported program's module, answering a wrong input shape as TorchScript does (a RuntimeError,
    which the default handler turns into a 400): the program's shape guards raise AssertionError."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    def __call__(self, data: torch.Tensor) -> Any:
        try:
            return self.module(data)
        except AssertionError as exc:
            raise RuntimeError(str(exc) or "the exported program's input guard failed") from None


def load_exported(path: Path, device: torch.device) -> ExportedModel:
    # An exported module cannot be switched to eval(): train/eval behaviour was fixed when it was
    # exported. Its weights move to the device like any module's.
    return ExportedModel(torch.export.load(str(path)).module().to(device))


def load_default_model(model_dir: Path, device: torch.device) -> Any:
    """``model.pt2`` when present, else ``model.pt``; raises FileNotFoundError naming both."""
    if (model_dir / EXPORTED_MODEL).is_file():
        return load_exported(model_dir / EXPORTED_MODEL, device)
    path = model_dir / TORCHSCRIPT_MODEL
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: no {EXPORTED_MODEL} or {TORCHSCRIPT_MODEL} (save a torch.export "
                                f"{EXPORTED_MODEL} or a TorchScript {TORCHSCRIPT_MODEL}, or add code/inference.py)")
    model = torch.jit.load(str(path), map_location=device)
    model.eval()
    return model
