"""Reading a YAML or JSON document a user wrote (agent config, job spec), with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from gpufleet.errors import UserInputError


def read_document(path: str | Path, what: str, when_missing: str) -> Any:
    """The parsed document at ``path`` (JSON by its ``.json`` suffix, else YAML).

    ``what`` names it in errors ("job spec"); ``when_missing`` is the fix for a missing file.
    """
    path = Path(path)
    try:
        text = path.read_text()
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except FileNotFoundError:
        raise UserInputError([f"{path}: no such {what} ({when_missing})"]) from None
    except (OSError, ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserInputError([f"{path}: unreadable {what} ({first})"]) from None
