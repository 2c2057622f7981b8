"""Fixtures for the docs tests: the agent tests' scriptable collector, which the admin guide's commands talk to."""

from tests.agent.conftest import collector as collector

__all__ = ["collector"]
