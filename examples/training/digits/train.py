"""Digits classifier: a SageMaker PyTorch script-mode training script.

Written only against SageMaker's contract (argparse hyperparameters, ``SM_*`` variables, checkpoints in
``/opt/ml/checkpoints``), so it runs unchanged on SageMaker or on a gpufleet training host, by itself or
under ``torchrun`` on one or several hosts. Saves a ``torch.export`` program ``model.pt2`` (64 pixel values
0-16 in, 10 logits out, any batch size) in ``SM_MODEL_DIR``: TorchScript is deprecated from torch 2.13.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

STOP = {"requested": False}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epoch-seconds", type=float, default=0.0, help="pad each epoch (simulates a bigger job)")
    p.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "model"))
    p.add_argument("--output-data-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR", "output"))
    p.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"), help="folder with digits.npz")
    p.add_argument("--checkpoint-dir", default=os.environ.get("SM_CHECKPOINT_DIR", "/opt/ml/checkpoints"))
    return p.parse_args()


class DigitsMLP(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / 16.0)   # raw pixel values in: serving needs no preprocessing


def load_data(train_dir: str | None, seed: int) -> tuple[np.ndarray, ...]:
    if train_dir and (Path(train_dir) / "digits.npz").exists():
        data = np.load(Path(train_dir) / "digits.npz")
        x, y = data["x"], data["y"]
    else:
        x, y = load_digits(return_X_y=True)
    return train_test_split(x.astype(np.float32), y.astype(np.int64), test_size=0.2, random_state=seed,
                            stratify=y)


def save_checkpoint(path: Path, epoch: int, model: nn.Module, opt: torch.optim.Optimizer) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "checkpoint.pt.tmp"
    torch.save({"epoch": epoch, "model": model.state_dict(), "opt": opt.state_dict()}, tmp)
    os.replace(tmp, path / "checkpoint.pt")   # the uploader never sees a half-written file


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: STOP.update(requested=True))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    use_cuda = torch.cuda.is_available() and int(os.environ.get("SM_NUM_GPUS", "0")) > 0
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if use_cuda else "cpu")
    if rank == 0:
        print(f"device={device.type}", flush=True)
    if world > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
        print(f"world_size={world} rank={rank} host={os.environ.get('SM_CURRENT_HOST')}", flush=True)
    torch.manual_seed(args.seed)
    x_train, x_test, y_train, y_test = load_data(args.train, args.seed)
    x_train, y_train = x_train[rank::world], y_train[rank::world]   # each rank its shard
    model = DigitsMLP(args.hidden).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    start_epoch, ckpt = 1, Path(args.checkpoint_dir) / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start_epoch = state["epoch"] + 1
        print(f"resumed_from_epoch={state['epoch']}", flush=True)
    train_model = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    xt, yt = torch.from_numpy(x_train).to(device), torch.from_numpy(y_train).to(device)
    xe, ye = torch.from_numpy(x_test).to(device), torch.from_numpy(y_test).to(device)
    loss_fn, gen = nn.CrossEntropyLoss(), torch.Generator().manual_seed(args.seed)
    accuracy = 0.0
    for epoch in range(start_epoch, args.epochs + 1):
        started, total = time.monotonic(), 0.0
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            opt.zero_grad()
            loss = loss_fn(train_model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        while time.monotonic() - started < args.epoch_seconds and not STOP["requested"]:
            time.sleep(0.02)
        if STOP["requested"]:   # this epoch is incomplete: keep the last whole one
            print(f"sigterm during epoch={epoch}: exiting", flush=True)
            raise SystemExit(143)
        with torch.no_grad():
            accuracy = float((model(xe).argmax(1) == ye).float().mean())
        if rank == 0:
            save_checkpoint(Path(args.checkpoint_dir), epoch, model, opt)
            print(f"epoch={epoch} train_loss={total / len(xt):.4f} test_accuracy={accuracy:.4f} "
                  f"t={time.time():.3f}", flush=True)
    if rank == 0:
        Path(args.model_dir).mkdir(parents=True, exist_ok=True)
        batch = torch.export.Dim("batch")   # serving batches requests: the first dimension stays dynamic
        program = torch.export.export(model.cpu().eval(), (torch.zeros(2, 64),), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(Path(args.model_dir) / "model.pt2"))
        Path(args.output_data_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_data_dir) / "metrics.json").write_text(json.dumps({"test_accuracy": accuracy}))
        print(f"test_accuracy={accuracy:.4f}", flush=True)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
