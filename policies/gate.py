"""The policy gate: checkov over synthesized stacks (``terraform_json``) and plans (``terraform_plan``),
with gpufleet's custom checks (``policies/checks``) and the inline skips written on each resource.

Why the skips are applied here: checkov 3.3's ``terraform_json`` and ``terraform_plan`` runners read no
inline suppressions (``registry.scan`` gets an empty skip list), so each construct records
``checkov:skip=<ID>: <reason>`` in the resource's ``//`` block of ``cdk.tf.json`` and this gate honours
exactly those, by resource address. A skip without a reason is itself a failure.

    python -m policies.gate cdktf.out/stacks/*            # terraform_json
    python -m policies.gate --plan plan.json cdktf.out/stacks/team-a
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CUSTOM_CHECKS = REPO / "policies" / "checks"
SKIP = re.compile(r"^checkov:skip=([A-Za-z0-9_]+):\s*(\S.*)$")


def checkov_binary() -> str:
    """``$CHECKOV_BIN``, else ``./.venv-checkov/bin/checkov`` (made by ``scripts/install-checkov``)."""
    configured = os.environ.get("CHECKOV_BIN")
    path = Path(configured) if configured else REPO / ".venv-checkov" / "bin" / "checkov"
    if not path.exists():
        raise FileNotFoundError(f"checkov not found at {path} (run scripts/install-checkov or set CHECKOV_BIN)")
    return str(path)


@dataclass
class GateResult:
    passed: int = 0
    passed_ids: set[str] = field(default_factory=set)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (check, resource, reason)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (check, resource, name)

    def merge(self, other: GateResult) -> None:
        self.passed += other.passed
        self.passed_ids |= other.passed_ids
        self.skipped += other.skipped
        self.failed += other.failed


def inline_skips(stack_dir: Path) -> dict[str, dict[str, str]]:
    """``{logical id: {check_id: reason}}`` from ``cdk.tf.json``."""
    doc = json.loads((stack_dir / "cdk.tf.json").read_text())
    skips: dict[str, dict[str, str]] = {}
    for block, prefix in (("resource", ""), ("data", "data.")):
        for rtype, entries in doc.get(block, {}).items():
            for name, body in entries.items():
                for text in (body.get("//", {}).get("checkov") or {}).values():
                    match = SKIP.match(text)
                    if not match:
                        raise ValueError(f"{prefix}{rtype}.{name}: checkov skip without a reason: {text!r}")
                    skips.setdefault(name, {})[match[1]] = match[2]
    return skips


def _logical_id(address: str) -> str:
    """The cdktf logical id, unique within a stack across all types: the last part of an address.

    checkov reports ``<type>.<id>`` for graph checks but ``resource.<id>`` or ``data.<id>`` for
    others, so matching on the id is the one reliable key."""
    return address.split("[")[0].rsplit(".", 1)[-1]


def _run_checkov(args: list[str]) -> list[dict[str, object]]:
    proc = subprocess.run([checkov_binary(), *args, "--skip-download", "-o", "json",
                           "--external-checks-dir", str(CUSTOM_CHECKS)], capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        raise RuntimeError(f"checkov failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    out = json.loads(proc.stdout)
    reports = out if isinstance(out, list) else [out]
    return [r for r in reports if isinstance(r, dict) and "results" in r]


def _apply(reports: list[dict[str, object]], skips: dict[str, dict[str, str]]) -> GateResult:
    result = GateResult()
    for report in reports:
        results = report["results"]
        assert isinstance(results, dict)
        result.passed += len(results.get("passed_checks", []))
        result.passed_ids |= {c["check_id"] for c in results.get("passed_checks", [])}
        for record in results.get("failed_checks", []):
            key = _logical_id(record["resource"])
            reason = skips.get(key, {}).get(record["check_id"])
            if reason:
                result.skipped.append((record["check_id"], key, reason))
            else:
                result.failed.append((record["check_id"], key, record["check_name"]))
    return result


def check_stack(stack_dir: Path) -> GateResult:
    return _apply(_run_checkov(["-d", str(stack_dir), "--framework", "terraform_json"]), inline_skips(stack_dir))


def check_plan(plan_json: Path, stack_dir: Path) -> GateResult:
    return _apply(_run_checkov(["-f", str(plan_json), "--framework", "terraform_plan"]), inline_skips(stack_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", nargs="+", type=Path, help="synthesized stack directories")
    parser.add_argument("--plan", type=Path, help="`terraform show -json` of a plan of the (single) stack")
    args = parser.parse_args(argv)
    total = GateResult()
    for stack in args.stacks:
        result = check_plan(args.plan, stack) if args.plan else check_stack(stack)
        print(f"{stack.name}: passed {result.passed}, skipped {len(result.skipped)}, failed {len(result.failed)}")
        for check_id, resource, name in result.failed:
            print(f"  FAILED {check_id} {resource}: {name}")
        total.merge(result)
    print(f"total: passed {total.passed}, skipped {len(total.skipped)}, failed {len(total.failed)}")
    return 1 if total.failed else 0


if __name__ == "__main__":
    sys.exit(main())
