"""The model registry: versions, approval and the DR export. The CLI wraps these functions."""

from gpufleet.registry.export import EXPORT_KEY, export_registry, read_export
from gpufleet.registry.models import approve_model_version, list_model_versions, reject_model_version

__all__ = ["EXPORT_KEY", "approve_model_version", "export_registry", "list_model_versions", "read_export",
           "reject_model_version"]
