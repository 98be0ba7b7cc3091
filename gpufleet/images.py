"""Container image references, as job specs, endpoints and agents write them.

A leaf module: the platform config (an endpoint's ``image:``), the job spec and the agent all read
references the same way, and none of them may import the others.

- A full reference names its registry: ``<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>``.
- A repository-relative reference has no registry (no ``/``): ``<repo>:<tag>``. It means that repository
  in the team's registry, the host of the team runtime's ``image_repository``; in local mode, the
  machine's own images (``localhost/<repo>:<tag>``, podman's name for an image built there).
"""

from __future__ import annotations

import re

# [registry[:port]/]path[:tag][@sha256:digest], lower-case path components.
IMAGE = (r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
         r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$")
IMAGE_FIX = ("a container image: <account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>, "
             "or <repo>:<tag> in the team's registry")
LOCAL_REGISTRY = "localhost"
_IMAGE = re.compile(IMAGE)


def check_image(value: str) -> str:
    """``value`` when it is an image reference; else ValueError with the fix (for pydantic validators)."""
    if not _IMAGE.match(value):
        raise ValueError(f"{value!r} is not an image reference (write {IMAGE_FIX})")
    return value


def is_repository_relative(image: str) -> bool:
    return "/" not in image


def resolve_image(image: str, image_repository: str | None, local: bool) -> str:
    """The full reference a runtime pulls or runs: a repository-relative ``image`` gets the team's
    registry (the host of ``image_repository``), or ``localhost`` in local mode; others are unchanged."""
    if not is_repository_relative(image):
        return image
    if local:
        return f"{LOCAL_REGISTRY}/{image}"
    if not image_repository:
        raise ValueError(f"image {image!r} names no registry and the team runtime config has no "
                         "image_repository (write the full reference, or redeploy the team stack)")
    return f"{image_repository.split('/', 1)[0]}/{image}"
