"""Image references: a repository-relative one resolves against the team's registry, or the machine's own
images in local mode; a full one is left as written."""

from __future__ import annotations

import pytest

from gpufleet.images import check_image, resolve_image

REPO = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme-vision-images"


def test_repository_relative_image_resolves_to_the_team_registry() -> None:
    assert resolve_image("acme-vision-images:v3", REPO, local=False) == f"{REPO}:v3"
    assert resolve_image("acme-vision-images:v3", REPO, local=True) == "localhost/acme-vision-images:v3"


def test_full_references_are_left_as_written() -> None:
    for image in (f"{REPO}:v3", "localhost/serve:1", f"{REPO}@sha256:{'a' * 64}", "registry:5000/x/y:z"):
        assert resolve_image(image, REPO, local=False) == image
        assert resolve_image(image, None, local=True) == image


def test_a_relative_image_without_a_team_repository_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"no image_repository \(write the full reference, or redeploy"):
        resolve_image("serve:v1", None, local=False)


@pytest.mark.parametrize("bad", ["", "Serve:v1", "serve:", "a b", "serve:v1@sha256:short", "/serve"])
def test_malformed_references_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="is not an image reference"):
        check_image(bad)
