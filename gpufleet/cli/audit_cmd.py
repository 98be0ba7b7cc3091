"""``gpufleet audit``: every recorded call judged against the synthesized IAM policies and network."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from gpufleet.cli.context import console
from gpufleet.cli.options import handle_errors, json_option
from gpufleet.errors import RuntimeFailure


@click.command()
@click.option("--stacks", "synth_dirs", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="Synth output to judge against (repeatable); default: the workspace's local synth and rebuilds.")
@click.option("--state", "state_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Folder of <stack>.tfstate files (terraform state pull) to resolve ARNs; default: local state.")
@click.option("--cloudtrail", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Judge the calls of a CloudTrail JSON file (real AWS) instead of the local call record.")
@json_option
@handle_errors
def audit(synth_dirs: tuple[Path, ...], state_dir: Path | None, cloudtrail: Path | None, as_json: bool) -> None:
    """Calls per role: denied ones with the statement that would allow them, unrouted services, unused grants.

    Exits 1 when any call is denied or unrouted."""
    from gpufleet.audit import run_audit
    from gpufleet.workspace import workspace

    report = run_audit(workspace(), list(synth_dirs) or None, state_dir, cloudtrail)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print(report)
    if not report.ok:
        raise RuntimeFailure("audit", f"{report.denied} denied and {report.unrouted} unrouted call(s)",
                             "add the suggested statements or VPC endpoints to the stacks, then redeploy")


def _print(report: object) -> None:
    from gpufleet.audit.evaluate import AuditReport

    assert isinstance(report, AuditReport)
    table = Table(title="calls per role, judged against the synthesized policies and network")
    for col in ("role", "region", "calls", "actions", "denied", "unrouted", "unused grants"):
        table.add_column(col, justify="right" if col in ("calls", "actions", "denied") else "left")
    for r in report.roles:
        unreviewed = [a for a, reason in r.unused.items() if reason is None]
        table.add_row(r.role, r.region, str(r.calls), str(len(r.actions)),
                      f"[red]{len(r.denied)}[/]" if r.denied else "0",
                      ", ".join(f"[red]{s}[/] ({n})" for s, n in sorted(r.unrouted.items())) or "-",
                      f"{len(r.unused)} ({len(unreviewed)} unreviewed)" if r.unused else "-")
    console.print(table)
    for r in report.roles:
        seen: set[tuple[str, str]] = set()
        for d in r.denied:
            if (d.request.action, d.request.resource) in seen:
                continue
            seen.add((d.request.action, d.request.resource))
            via = f" (for {d.request.via})" if d.request.via else ""
            console.print(f"[red]denied[/] {r.role}: {d.operation} needs {d.request.action}{via} on "
                          f"{d.request.resource}: {d.reason}; add {json.dumps(d.suggestion)}")
        unreviewed = [a for a, reason in r.unused.items() if reason is None]
        if unreviewed:
            console.print(f"[yellow]unused[/] {r.role}: {', '.join(unreviewed)} (remove them from the stacks, or "
                          "keep them with a reason in gpufleet/audit/reviewed.py)")
    for who, n in report.unattributed.items():
        console.print(f"[red]no role[/] for {n} call(s) of {who}: no synthesized role of that kind and team there")
    judged = report.resource_policy_requests
    console.print(f"resource policies: {judged['bucket']} S3 request(s) judged against bucket policies (none in a "
                  "local synth: audit `gpufleet synth --target aws --out DIR` with --stacks DIR for them), "
                  f"{judged['key']} KMS request(s) against key policies (keys whose ARN the state gives)")
    console.print(f"{report.stand_in_calls} call(s) of local stand-ins for AWS itself were not judged; ARNs resolved "
                  + ("from the deployed state" if all(report.resolved_by_state.values())
                     else "partly from synthesized names (no state for "
                     + ", ".join(k for k, v in report.resolved_by_state.items() if not v) + ")"))
