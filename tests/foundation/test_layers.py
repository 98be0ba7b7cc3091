"""The package's floors hold: import-linter's contracts, no import cycles, and a GPU host's agent install
that loads no cdktf, jsii, rich or click."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import grimp
import pytest

from tests.conftest import REPO_ROOT

AGENT_ROLES = ["gpufleet.agent.training.daemon", "gpufleet.agent.serving.daemon", "gpufleet.agent.__main__"]
NOT_ON_A_HOST = ("cdktf", "cdktf_cdktf_provider_aws", "constructs", "jsii", "rich", "click")
CONTROL_PLANE_AND_ABOVE = ("gpufleet.cli", "gpufleet.demo", "gpufleet.dr", "gpufleet.deploy", "gpufleet.local",
                           "gpufleet.rollout", "gpufleet.registry", "gpufleet.jobs", "gpufleet.teams",
                           "gpufleet.stacks", "gpufleet.constructs", "gpufleet.providers", "gpufleet.app",
                           "gpufleet.audit", "gpufleet.invoke", "gpufleet.synth_split", "gpufleet.bootstrap",
                           "gpufleet.nodes", "gpufleet.terraform")


def test_import_linter_contracts_are_kept() -> None:
    proc = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())", "--no-cache"], cwd=REPO_ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in list(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _squashed(graph: grimp.ImportGraph, depth: int) -> dict[str, set[str]]:
    """The import graph with every module collapsed to its ancestor ``depth`` names deep (``gpufleet.x``: 2)."""
    def top(module: str) -> str:
        return ".".join(module.split(".")[:depth])

    edges: dict[str, set[str]] = defaultdict(set)
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if top(imported) != top(module) and imported.startswith("gpufleet"):
                edges[top(module)].add(top(imported))
    return edges


@pytest.mark.parametrize("depth", [2, 3, 4], ids=["packages", "subpackages", "modules"])
def test_no_import_cycles(depth: int) -> None:
    graph = grimp.build_graph("gpufleet", exclude_type_checking_imports=True)
    assert _cycles(_squashed(graph, depth)) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("role", AGENT_ROLES)
def test_agent_role_imports_nothing_a_gpu_host_does_not_install(role: str) -> None:
    code = f"import json, sys; import {role}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(proc.stdout)
    not_ours = NOT_ON_A_HOST
    if "uvicorn" in loaded:
        # uvicorn's package __init__ imports its own command line (uvicorn.main), which is click: any
        # `import uvicorn.x` loads it. click comes from the serving extra's uvicorn, never from gpufleet
        # (import-linter's agent contract forbids it), and cdktf, jsii and rich stay out.
        not_ours = tuple(m for m in NOT_ON_A_HOST if m != "click")
    strays = [m for m in loaded if m.split(".")[0] in not_ours or m.startswith(CONTROL_PLANE_AND_ABOVE)]
    assert strays == []
    assert role in loaded
