"""Usage provider, kind *url*: the product answers ``GET /internal/usage`` on the loopback interface.

The agent only accepts a URL on this machine (``localhost``, ``127.0.0.1`` or ``::1``) and never sends it
through a proxy::

    [usage]
    url = "http://127.0.0.1:8081/internal/usage"

A product with a web framework adds the same route to its own server; this stand-in uses the standard
library. Run it with ``python usage_http.py [--port 8081]``.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Counts:
    """The product's counters (a real product reads its database)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.projects = 3
        self.deployments = 120

    def deploy(self) -> None:
        """Record one deployment."""
        with self._lock:
            self.deployments += 1

    def snapshot(self) -> dict[str, int]:
        """The counts as the agent expects them."""
        with self._lock:
            return {"projects": self.projects, "deployments": self.deployments}


def make_server(counts: Counts, port: int) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 answering the counts at ``/internal/usage`` (404 elsewhere)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/internal/usage":
                self.send_error(404)
                return
            body = json.dumps(counts.snapshot()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the product's log free of per-request noise

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main() -> None:
    """Serve until Ctrl-C; prints the URL to configure."""
    parser = argparse.ArgumentParser(description="Serve the product's usage counts on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    server = make_server(Counts(), args.port)
    print(f"usage provider at http://127.0.0.1:{server.server_address[1]}/internal/usage", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
