"""Prints, sleeps, then saves a one-file model: a short job that outlasts a fault and registers once."""

import argparse
import os
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float, default=40)
args = parser.parse_args()
print("training", flush=True)
time.sleep(args.seconds)
(Path(os.environ["SM_MODEL_DIR"]) / "weights.txt").write_text("0.5\n")
print("saved", flush=True)
