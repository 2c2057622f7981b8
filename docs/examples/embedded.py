"""Usage provider, kind *callable*: a Python product embeds :class:`agent.Agent` and hands it a function.

The agent runs in a daemon thread of the product's process, reads its config like the CLI does
(``TELEMETRY_AGENT_CONFIG`` and ``TELEMETRY_*`` variables), calls ``usage`` in its own thread with
``usage.timeout_s``, never raises into the product and never blocks it. The names ``agent`` and
``schema`` join the product's interpreter.

Run it with ``TELEMETRY_AGENT_CONFIG=/etc/deployserver/telemetry.toml python embedded.py --seconds 10``. The
agent takes its first snapshot as soon as it starts (consent ``review`` or ``auto``; with ``off`` it reads
nothing and says so), and logs it on the ``agent`` logger, which this example prints to stderr::

    agent: telemetry agent running (state dir /var/lib/deployserver/telemetry)
    agent: snapshot 2026-11-28T10:00:00Z: 8 metrics, 0 dropped

``telemetry-agent preview`` (same config) then shows the snapshot with the product's counts.
"""

from __future__ import annotations

import argparse
import logging
import random
import threading
import time

from agent import Agent, load_config


class Product:
    """A stand-in server product: it creates projects and deploys them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.projects = 1
        self.deployments = 0

    def work(self) -> None:
        """One unit of the product's own work."""
        with self._lock:
            if random.random() < 0.1:  # noqa: S311 - simulated activity
                self.projects += 1
            self.deployments += 1

    def usage(self) -> dict[str, int]:
        """The counts the agent asks for: current projects, cumulative deployments."""
        with self._lock:
            return {"projects": self.projects, "deployments": self.deployments}


def main() -> None:
    """Run the product for ``--seconds`` with telemetry embedded."""
    parser = argparse.ArgumentParser(description="A product with the telemetry agent embedded.")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    # A product configures logging its own way; the agent logs on the "agent" logger (info: each snapshot,
    # seal and send; warning: what went wrong, e.g. a provider that failed).
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    product = Product()
    # load_config() raises ConfigError on a bad config: fail at start-up, where the admin sees it.
    telemetry = Agent(load_config(), usage=product.usage)
    telemetry.start()  # returns at once; consent decides whether anything is ever sent
    try:
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            product.work()
            time.sleep(0.05)
    finally:
        telemetry.stop()  # waits at most 5 s; the daemon thread never keeps the process alive
    print(f"product: {product.usage()}; see what the agent took with `telemetry-agent preview`")


if __name__ == "__main__":
    main()
