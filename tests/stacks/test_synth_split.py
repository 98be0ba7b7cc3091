"""Team stacks synthesized in several processes (gpufleet.synth_split) give the same bytes as one process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpufleet import synth_split
from gpufleet.app import synth_app
from gpufleet.config import PlatformConfig, parse_config
from gpufleet.errors import UserInputError
from gpufleet.synth_split import Helper, process_count, slices, stable_json, wait_helper
from gpufleet.target import aws_target

real_missing_references = synth_split.missing_references


def mixed_teams(example: PlatformConfig) -> PlatformConfig:
    """The example's teams plus three more; only the last one has an internet-facing endpoint, so the
    platform's public-subnet outputs come from a helper process's slice alone."""
    doc = example.model_dump(mode="json", exclude_none=True)
    vision, nlp = doc["teams"]
    public = {**vision["endpoints"][0], "name": "public", "internet_facing": True, "allowed_cidrs": ["203.0.113.0/24"],
              "certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/0b7e7e3a-5d7c-4e7f-9f3e-3f1d2c4b5a69"}
    doc["teams"] = [vision, nlp, {**nlp, "name": "audio"}, {**vision, "name": "speech"},
                    {**nlp, "name": "robots", "endpoints": [public]}]
    return parse_config(doc)


def files(outdir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(outdir)): p.read_bytes() for p in sorted(outdir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("teams", "processes", "resynthesized"), [
    (5, 3, True),    # the last slice alone reads the public subnets: this process synthesizes again
    (4, 2, False),   # every slice reads the same platform attributes: its first synth stands
])
def test_split_synth_writes_the_same_bytes_as_one_process(example_cfg: PlatformConfig, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, teams: int,
                                                         processes: int, resynthesized: bool) -> None:
    doc = mixed_teams(example_cfg).model_dump(mode="json", exclude_none=True)
    cfg = parse_config({**doc, "teams": doc["teams"][:teams]})
    target = aws_target(tmp_path / "state")
    one = synth_app(cfg, target, tmp_path / "one", processes=1)
    missing: list[list[str]] = []

    def recorded(outdir: Path, helper_outs: list[Path]) -> list[str]:
        missing.append(real_missing_references(outdir, helper_outs))
        return missing[-1]

    monkeypatch.setattr(synth_split, "missing_references", recorded)
    split = synth_app(cfg, target, tmp_path / "split", processes=processes)
    assert split.stacks == one.stacks
    expected, got = files(tmp_path / "one"), files(tmp_path / "split")
    assert sorted(got) == sorted(expected)
    assert [name for name in expected if got[name] != expected[name]] == []
    assert bool(missing[0]) is resynthesized
    platform = json.loads(expected["stacks/platform/cdk.tf.json"])
    assert any("public" in name for name in platform["output"]) is resynthesized  # the last slice's reference


def test_slices_are_contiguous_and_near_equal(example_cfg: PlatformConfig) -> None:
    teams = mixed_teams(example_cfg).teams
    assert [[t.name for t in s] for s in slices(teams, 2)] == [["vision", "nlp", "audio"], ["speech", "robots"]]
    assert len(slices(teams, 9)) == len(teams)


def test_process_count_follows_the_override_and_needs_teams_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_SYNTH_PROCESSES", "3")
    assert process_count(2) == 3
    monkeypatch.setenv("GPUFLEET_SYNTH_PROCESSES", "two")
    with pytest.raises(UserInputError, match="GPUFLEET_SYNTH_PROCESSES: 'two' is not a process count"):
        process_count(2)
    monkeypatch.delenv("GPUFLEET_SYNTH_PROCESSES")
    assert process_count(2) == 1   # a helper's start-up costs more than two teams


def test_stable_json_matches_cdktfs_layout() -> None:
    assert stable_json({"b": [], "a": {"y": [1, "x"], "x": {}}}) == (
        '{\n  "a": {\n    "x": {\n    },\n    "y": [\n      1,\n      "x"\n    ]\n  },\n  "b": [\n  ]\n}')


def test_a_failed_slice_fails_the_synth_with_its_error(tmp_path: Path) -> None:
    log = tmp_path / "slice-1.log"
    failing = "import sys; sys.exit('ValueError: a NAT gateway needs public subnets')"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", failing], stderr=err)
    with pytest.raises(RuntimeError) as failed:
        wait_helper(Helper(proc, log))
    assert "(exit 1)" in str(failed.value) and "NAT gateway needs public subnets" in str(failed.value)
