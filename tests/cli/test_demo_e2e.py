"""The README's main command end to end, then the same lifecycle through the CLI, then `local down`.

Real parts throughout: moto server, the real Terraform applying the platform and team stacks, training
agents running examples/training/digits/train.py with torch, serving agents, the local router and
alarm evaluator. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gpufleet.demo import DEMO_CONFIG
from gpufleet.local import emulator
from gpufleet.local.cloud import find as find_cloud
from gpufleet.local.instances import pid_alive, read_instances

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "training" / "digits"


def _gpufleet(cwd: Path, env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpufleet.cli", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_demo_then_cli_lifecycle_then_local_down_leaves_nothing(tmp_path: Path, repo_env: dict[str, str]) -> None:
    env = {k: v for k, v in repo_env.items() if k not in ("GPUFLEET_HOME", "GPUFLEET_TARGET", "GPUFLEET_TEAM")}
    demo = json.loads(_ok(_gpufleet(tmp_path, env, "demo", "--json", "--bake-seconds", "5", timeout=720)))
    print(json.dumps(demo, indent=2))   # the per-phase times, for the issue note
    assert demo["accuracy"] > 0.9
    assert set(demo["versions"]) == {"digits-small", "digits"}
    assert next(iter(demo["phases"])) == "local cloud up" and demo["latency_ms"]["p50"] > 0

    # The same lifecycle by hand through the CLI, on the cloud the demo left running.
    spec = tmp_path / "job.yaml"
    spec.write_text("name: digits-cli\nteam: ml\nentry_point: train.py\nhyperparameters: {epochs: 5}\n"
                    "output_model_name: digits\n")
    job = json.loads(_ok(_gpufleet(tmp_path, env, "job", "submit", str(spec), "--source", str(EXAMPLE), "--wait",
                                   "--json")))
    assert job["status"] == "SUCCEEDED"
    ref = job["model"]
    assert ref == "digits:3"
    versions = json.loads(_ok(_gpufleet(tmp_path, env, "model", "list", "digits", "--json")))
    assert {v["version"]: v["status"] for v in versions}[3] == "PendingManualApproval"
    refused = _gpufleet(tmp_path, env, "endpoint", "deploy", "digits", "--model", ref)
    assert refused.returncode == 2 and "only Approved models deploy" in refused.stderr
    _ok(_gpufleet(tmp_path, env, "model", "approve", ref))
    status = json.loads(_ok(_gpufleet(tmp_path, env, "endpoint", "deploy", "digits", "--model", ref, "--strategy",
                                      "linear", "--linear-step", "50", "--bake-seconds", "2", "--json")))
    assert status["live"] == "blue"    # the demo's canary made green live; this rollout went back to blue
    assert status["variants"]["blue"]["version"] == 3 and status["variants"]["blue"]["weight"] == 100
    logits = json.loads(_ok(_gpufleet(tmp_path, env, "endpoint", "invoke", "digits", "--data",
                                      json.dumps([[0.0] * 64]))))
    assert len(logits[0]) == 10
    # Back to the demo's first model through the same guarded path: a named Approved version after success.
    small = demo["versions"]["digits-small"]
    _ok(_gpufleet(tmp_path, env, "endpoint", "rollback", "digits", "--to", f"digits:{small}", "--bake-seconds", "2"))
    back = json.loads(_ok(_gpufleet(tmp_path, env, "endpoint", "status", "digits", "--json")))
    assert back["status"] == "InService" and back["live"] == "green"
    assert back["variants"]["green"]["version"] == small and back["variants"]["green"]["weight"] == 100
    assert len(json.loads(_ok(_gpufleet(tmp_path, env, "endpoint", "invoke", "digits", "--data",
                                        json.dumps([[0.0] * 64]))))[0]) == 10
    fleet = json.loads(_ok(_gpufleet(tmp_path, env, "fleet", "status", "--json")))
    # The training fleet is listed even when its idle hosts have scaled in (how soon depends on the machine's
    # load); the live variant's group shows its running hosts.
    assert [g["role"] for g in fleet].count("training") == 1
    live = next(g for g in fleet if g["serves"] == "digits/green")
    assert live["instances"] and all("pid" in i for i in live["instances"]), live
    jobs = json.loads(_ok(_gpufleet(tmp_path, env, "job", "list", "--json")))
    assert sorted(j["status"] for j in jobs) == ["SUCCEEDED"] * 3

    # Every call above, by every role, judged against the synthesized policies, boundary and network
    # (read now: `local down` removes the record; asserted last, so a finding never leaves processes behind).
    audited = _gpufleet(tmp_path, env, "audit", "--json")
    # The same calls against what real AWS gets (its bucket policies too, which local mode leaves out), its
    # ARNs resolved from the same state: the real-AWS synth, written into the workspace.
    root = tmp_path / ".gpufleet"
    (root / "demo.yaml").write_text(yaml.safe_dump(DEMO_CONFIG))
    _ok(_gpufleet(tmp_path, env, "synth", "--target", "aws", "--config", str(root / "demo.yaml"),
                  "--out", str(root / "aws.out")))
    audited_aws = _gpufleet(tmp_path, env, "audit", "--stacks", str(root / "aws.out"), "--json")

    emu, cloud = emulator.find(root), find_cloud(root)
    assert emu is not None and cloud is not None
    pids = [emu.pid, cloud.pid, *(i.pid for i in read_instances(root))]
    _ok(_gpufleet(tmp_path, env, "local", "down"))
    assert [p for p in pids if pid_alive(p)] == []
    assert sorted(os.listdir(tmp_path)) == ["job.yaml"]

    report = json.loads(audited.stdout)
    print(json.dumps({r["role"]: {"calls": r["calls"], "unused": [u["action"] for u in r["unused_grants"]]}
                      for r in report["roles"]}, indent=1))   # for the issue note
    assert (report["denied"], report["unrouted"], report["unattributed"]) == (0, 0, {}), audited.stderr[-6000:]
    assert audited.returncode == 0
    by_kind = {r["kind"]: r for r in report["roles"]}
    assert {"training", "serving", "operator"} <= set(by_kind)
    assert {"sqs:ReceiveMessage", "dynamodb:UpdateItem", "s3:PutObject", "kms:GenerateDataKey",
            "cloudwatch:PutMetricData"} <= set(by_kind["training"]["actions"])
    assert {"s3:GetObject", "kms:Decrypt", "dynamodb:GetItem"} <= set(by_kind["serving"]["actions"])
    assert {"sqs:SendMessage", "elasticloadbalancing:ModifyRule"} <= set(by_kind["operator"]["actions"])
    unreviewed = {r["kind"]: [u["action"] for u in r["unused_grants"] if u["reviewed_reason"] is None]
                  for r in report["roles"]}
    assert unreviewed == {kind: [] for kind in unreviewed}

    real = json.loads(audited_aws.stdout)
    assert (real["denied"], real["unrouted"], real["unattributed"]) == (0, 0, {}), audited_aws.stderr[-6000:]
    assert all(real["resolved_by_state"].values()), real["resolved_by_state"]
    # Both judge the keys' policies (their ARNs come from the state); only the real-AWS synth has bucket policies.
    assert report["resource_policy_requests"]["bucket"] == 0 and report["resource_policy_requests"]["key"] > 0
    assert real["resource_policy_requests"]["bucket"] > 0 and real["resource_policy_requests"]["key"] > 0
    assert [r["role"] for r in real["roles"]] == [r["role"] for r in report["roles"]]   # agents call on meanwhile
