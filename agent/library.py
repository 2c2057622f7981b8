"""The agent embedded in a Python product: a background thread that never raises into the host or blocks it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ._guard import never_raise
from .config import AgentConfig
from .daemon import Daemon
from .engine import Engine
from .metrics import MetricsView
from .remote_policy import CollectorPolicy

__all__ = ["Agent"]

log = logging.getLogger("agent")


class Agent:
    """Run the agent's schedule in a daemon thread inside a Python product.

    ``usage`` is the product's provider: a callable returning its counts, e.g.
    ``lambda: {"projects": db.count_projects(), "deployments": db.total_deployments()}``. It runs in
    its own thread with ``usage.timeout_s``; a slow or failing callable costs one snapshot's usage metrics.
    Every method returns quickly and swallows (logs) errors: telemetry must never break the product.
    Memory stays bounded: snapshots, the outbox and the history live on disk with fixed caps.
    """

    def __init__(self, config: AgentConfig, *, usage: Callable[[], Mapping[str, object]] | None = None) -> None:
        self._config = config
        self._usage = usage
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background thread (a no-op when it is already running)."""
        with never_raise("start"):
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="telemetry-agent", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        with never_raise("run"):
            Daemon(self._engine(), self._stop).run()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to stop and wait at most ``timeout_s`` for it (it is a daemon thread either way)."""
        with never_raise("stop"):
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout_s)

    def _engine(self) -> Engine:
        return Engine(self._config, usage=self._usage, lock_wait_s=1.0)

    def metrics(self) -> MetricsView | None:
        """Every catalogue metric and its state (collected, disabled, awaiting approval, not accepted by the
        collector, retired), as `telemetry-agent metrics` shows it; None if the state dir cannot be read now."""
        view: MetricsView | None = None
        with never_raise("metrics"):
            engine = self._engine()
            with engine.state.lock():
                view = engine.metrics()
        return view

    def approve_metrics(self, keys: Sequence[str] = (), *, every: bool = False) -> list[str]:
        """Approve metrics added after the consented catalogue version (``every``: all that wait), as
        `telemetry-agent metrics approve` does; returns those newly approved ([] on any error, which is logged)."""
        approved: list[str] = []
        with never_raise("approve metrics"):
            engine = self._engine()
            with engine.state.lock():
                approved = engine.approve_metrics(list(keys), every=every)
        return approved

    def import_policy(self, path: Path) -> CollectorPolicy | None:
        """Go by the collector policy in ``path`` (the JSON of its ``GET /v1/policy``), for an air-gapped install;
        returns it, or None on any error (logged)."""
        policy: CollectorPolicy | None = None
        with never_raise("import policy"):
            engine = self._engine()
            with engine.state.lock():
                policy = engine.import_policy(path)
        return policy

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()
