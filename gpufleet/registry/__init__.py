"""The model registry: versions, approval and the DR export. The CLI wraps these functions."""

from gpufleet.registry.export import EXPORT_KEY, export_registry, read_export
from gpufleet.registry.models import (
    approve_model_version,
    artifact_key,
    get_model_version,
    list_model_versions,
    register_model_version,
    reject_model_version,
)

__all__ = ["EXPORT_KEY", "approve_model_version", "artifact_key", "export_registry", "get_model_version",
           "list_model_versions", "read_export", "register_model_version", "reject_model_version"]
