"""The DR drill end to end through the CLI: region A deployed, trained and serving, lost, rebuilt in B.

Real parts: moto server, the real Terraform (primary stacks, then the rebuild's, importing the replica
bucket), training and serving agents with torch, the local routers. The one stand-in is S3 replication,
which the emulator does not perform: the drill copies the objects and says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1300)]


def test_drill_rebuilds_same_versions_same_predictions_and_a_second_rebuild_changes_nothing(
        tmp_path: Path, repo_env: dict[str, str]) -> None:
    env = {k: v for k, v in repo_env.items() if k not in ("GPUFLEET_HOME", "GPUFLEET_TARGET", "GPUFLEET_TEAM")}
    try:
        proc = subprocess.run([sys.executable, "-m", "gpufleet.cli", "dr", "drill", "--json"], cwd=tmp_path,
                              env=env, text=True, capture_output=True, timeout=1200, check=False)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
        assert "STAND-IN for S3 replication" in proc.stderr
        doc = json.loads(proc.stdout)
        print(json.dumps(doc, indent=2))   # the RTO breakdown, for the issue note
        assert doc["same_outputs"] is True
        assert [v["version"] for v in doc["versions_after"]] == [1, 2]
        assert doc["versions_after"] == doc["versions_before"]
        assert doc["restored"][0]["models_restored"] == ["digits:1", "digits:2"]
        assert doc["restored"][0]["endpoints_redeployed"] == {"digits": "digits:2"}
        assert doc["second_rebuild"] == {"stack_changes": 0, "records_changed": False, "plan_changes": 0}
        assert set(doc["rto_phases"]) == {"stacks", "local cloud", "restore + redeploy", "first answer"}

        # The rebuilt roles in the DR region, judged like the primary's: the serving hosts there read
        # replicated models, encrypted with the replica key that the lost region's stack made.
        audited = subprocess.run([sys.executable, "-m", "gpufleet.cli", "audit", "--json"], cwd=tmp_path, env=env,
                                 text=True, capture_output=True, timeout=300, check=False)
        report = json.loads(audited.stdout)
        print(json.dumps({r["role"]: {"calls": r["calls"], "actions": r["actions"], "kms_keys": r["kms_keys"],
                                      "unused": [u["action"] for u in r["unused_grants"]]}
                          for r in report["roles"]}, indent=1))
        assert (report["denied"], report["unrouted"], report["unattributed"]) == (0, 0, {}), audited.stderr[-6000:]
        rebuilt = {r["kind"]: r for r in report["roles"] if r["region"] == "us-west-2"}
        assert {"serving", "operator"} <= set(rebuilt)
        state = json.loads((tmp_path / ".gpufleet" / "state" / "team-ml.tfstate").read_text())
        replica_key = next(r["instances"][0]["attributes"]["arn"] for r in state["resources"]
                           if r["type"] == "aws_kms_key" and r["name"].startswith("dr-key"))
        assert "kms:Decrypt" in rebuilt["serving"]["actions"]
        assert replica_key in rebuilt["serving"]["kms_keys"], rebuilt["serving"]
        # (unused grants are judged by the demo e2e: the rebuilt roles here never train)
    finally:
        subprocess.run([sys.executable, "-m", "gpufleet.cli", "local", "down"], cwd=tmp_path, env=env,
                       capture_output=True, timeout=180, check=False)
