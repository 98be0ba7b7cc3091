"""Fails the way user code fails: some output, a traceback, a non-zero exit."""

import sys

print("loading data", flush=True)
print("the last words before failing", flush=True)
sys.exit(3)
