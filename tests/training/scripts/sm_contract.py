"""A SageMaker script-mode entry point that records what the contract gave it (no torch needed)."""

import argparse
import json
import os
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--learning-rate", type=float, default=0.1)
parser.add_argument("--optimizer", type=str, default="sgd")
parser.add_argument("--amp", type=str, default="false")
parser.add_argument("--model-dir", type=str, default=os.environ["SM_MODEL_DIR"])
parser.add_argument("--train", type=str, default=os.environ.get("SM_CHANNEL_TRAINING"))
args = parser.parse_args()

config_dir = Path(os.environ["SM_INPUT_CONFIG_DIR"])
train = Path(args.train)
seen = {
    "args": {"epochs": args.epochs, "learning_rate": args.learning_rate, "optimizer": args.optimizer, "amp": args.amp},
    "hps": json.loads(os.environ["SM_HPS"]),
    "channels": json.loads(os.environ["SM_CHANNELS"]),
    "channel_files": sorted(p.relative_to(train).as_posix() for p in train.rglob("*") if p.is_file()),
    "current_host": os.environ["SM_CURRENT_HOST"],
    "hosts": json.loads(os.environ["SM_HOSTS"]),
    "num_gpus": int(os.environ["SM_NUM_GPUS"]),
    "hyperparameters_json": json.loads((config_dir / "hyperparameters.json").read_text()),
    "sm_hp_epochs": os.environ["SM_HP_EPOCHS"],
    # torchrun's worker variables, which a one-process job gets without torchrun
    "torch_env": {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                                 "MASTER_PORT", "TORCHELASTIC_RUN_ID")},
    "parent": Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode().split("\0"),
}
Path(os.environ["SM_OUTPUT_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
Path(args.model_dir, "seen.json").write_text(json.dumps(seen))
print("contract ok")
