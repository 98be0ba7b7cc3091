"""Fault-injection tests: each injects one fault into real parts (the moto server process, real agents,
real Terraform) and asserts what must hold. The training agents' fixtures are shared with tests/training."""

from tests.training.conftest import start_agent, team

__all__ = ["start_agent", "team"]
