"""The telemetry agent: collects the catalogue's metrics on a server install and delivers them with consent.

Run it beside a product as `telemetry-agent run`, or embed it in a Python product::

    from agent import Agent, load_config

    telemetry = Agent(load_config(), usage=lambda: {"projects": 12, "deployments": 3400})
    telemetry.start()   # background thread; never raises, never blocks
    ...
    telemetry.stop()
"""

from ._version import __version__ as __version__
from .config import AgentConfig, load_config
from .engine import Engine
from .errors import (
    AgentError,
    ConfigError,
    ProbeUnavailableError,
    RejectedError,
    SendError,
    StateAccessError,
    StateError,
    StateIOError,
    StateLockedError,
)
from .library import Agent
from .metrics import MetricState, MetricsView
from .remote_policy import CollectorPolicy

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentError",
    "CollectorPolicy",
    "ConfigError",
    "Engine",
    "MetricState",
    "MetricsView",
    "ProbeUnavailableError",
    "RejectedError",
    "SendError",
    "StateAccessError",
    "StateError",
    "StateIOError",
    "StateLockedError",
    "load_config",
]
