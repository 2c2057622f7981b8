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

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentError",
    "ConfigError",
    "Engine",
    "ProbeUnavailableError",
    "RejectedError",
    "SendError",
    "StateAccessError",
    "StateError",
    "StateIOError",
    "StateLockedError",
    "load_config",
]
