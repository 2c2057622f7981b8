"""The ``token`` and ``report`` subcommands of telemetry-collector (placeholder: issue 5 fills it in)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``token`` and ``report`` to the collector CLI; each sets ``func(args) -> int`` as its default."""
