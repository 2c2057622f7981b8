"""The guard around every entry point a host product calls: log and swallow, never raise into the host."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["never_raise"]

log = logging.getLogger("agent")
STRICT = False
"""Tests set this to re-raise, so a swallowed bug still fails them."""


@contextlib.contextmanager
def never_raise(what: str) -> Iterator[None]:
    """Log and swallow errors: a telemetry bug must never break the host product."""
    try:
        yield
    except Exception:
        if STRICT:
            raise
        log.warning("telemetry agent: %s failed; will retry next interval", what, exc_info=True)
