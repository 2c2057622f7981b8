"""Requests aiohttp cannot parse, sent as raw bytes to a real server: a JSON error that echoes nothing.

aiohttp answers these before any middleware runs, by default as text/plain quoting the request line or
the offending header back (an ``Authorization`` header included). The collector answers them with its
usual error body, and every answer names the server without versions and forbids content sniffing.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.collector.conftest import start_server, stop_server

pytestmark = pytest.mark.slow

SECRET = "tct_0123abcd_ThisIsTheSecretPartOfTheTokenXXXXXXXXXXXXXXXXXX"
REQUESTS = {
    "raw UTF-8 in the path": b"GET /v1/reports/\xc3\xa4 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer %s\r\n\r\n",
    "control character in a header": (
        b"GET /v1/reports HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer %s\r\nX-Note: a\x01b\r\n\r\n"
    ),
    "control character in the authorization header": b"GET /v1/reports HTTP/1.1\r\nHost: h\r\n"
    b"Authorization: Bearer %s\x7f\x01\r\n\r\n",
    "not HTTP at all": b"\x16\x03\x01 %s hello\r\n\r\n",
    "header line too long": b"GET /healthz HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer %s" + b"x" * 9000 + b"\r\n\r\n",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """One collector subprocess for the module's tests: its host and port."""
    proc, url = start_server(tmp_path_factory.mktemp("raw") / "t.duckdb")
    host, port = url.removeprefix("http://").rsplit(":", 1)
    yield host, int(port)
    code, err = stop_server(proc)
    assert code == 0, err


def _exchange(host: str, port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a new connection; the status, headers (lower-case names) and body of the answer."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                if len(body) >= int(headers.get("content-length", "0")):
                    return int(lines[0].split()[1]), headers, body[: int(headers.get("content-length", "0"))]
    raise AssertionError(f"no complete answer: {data!r}")


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_unparsable_request_gets_a_json_error_that_echoes_nothing(case: str, server: tuple[str, int]) -> None:
    """400 with {"error": {code, message, path}}, application/json, no byte of the request in the answer."""
    host, port = server
    status, headers, body = _exchange(host, port, REQUESTS[case] % SECRET.encode())
    assert status == 400, body
    assert headers["content-type"].startswith("application/json"), headers
    error = orjson.loads(body)["error"]
    assert set(error) == {"code", "message", "path"}
    assert error["code"] == "bad_request"
    assert error["path"] == ""
    answer = b"\r\n".join(f"{k}: {v}".encode() for k, v in headers.items()) + body
    for echoed in (SECRET.encode(), b"ThisIsTheSecret", b"Bearer", b"v1/reports", b"X-Note", b"\xc3\xa4", b"hello"):
        assert echoed not in answer
    assert headers["server"] == "telemetry-collector"
    assert headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /nope HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /v1/reports HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"POST /v1/batches HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\n{}",
        b"GET /dashboard HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    ],
    ids=["healthz", "unrouted", "reports-401", "batch-422", "dashboard", "metrics"],
)
def test_every_answer_names_the_server_without_versions(raw: bytes, server: tuple[str, int]) -> None:
    """Routed answers and errors alike: ``Server: telemetry-collector`` and ``X-Content-Type-Options: nosniff``."""
    host, port = server
    _, headers, _ = _exchange(host, port, raw)
    assert headers["server"] == "telemetry-collector"
    assert headers["x-content-type-options"] == "nosniff"


def test_unparsable_requests_leave_no_secret_in_the_log(tmp_path: Path) -> None:
    """The server's own log lines for bad requests (at debug level) hold neither their bytes nor the client."""
    proc, url = start_server(tmp_path / "t.duckdb", "--log-level", "debug")
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        for raw in REQUESTS.values():
            assert _exchange(host, int(port), raw % SECRET.encode())[0] == 400
    finally:
        code, log = stop_server(proc)
    assert code == 0, log
    assert "error handling a request" in log or "unparsable request" in log
    for leaked in ("ThisIsTheSecret", "Bearer", "X-Note", "hello", "127.0.0.1", "Traceback"):
        assert leaked not in log
