"""Prints, then sleeps: a job to interrupt, cancel or time out."""

import argparse
import time

parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float, default=60)
args = parser.parse_args()
print("sleeping", flush=True)
time.sleep(args.seconds)
print("woke up", flush=True)
