"""The agent's release, sent as ``agent_version`` in every batch."""

__version__ = "0.1.0"
