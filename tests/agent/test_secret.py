"""The install secret never travels in cleartext, and credentials in an endpoint URL can never be printed.

The real CLI in a subprocess; an audit hook stops the process at the first name lookup or connection, so a
refusal is shown to happen before anything leaves the machine.
"""

from __future__ import annotations

import pytest

from agent import AgentConfig
from tests.agent.conftest import AgentHome, FakeCollector, cli

pytestmark = pytest.mark.slow
NO_NETWORK = (
    "def _hook(event, args):\n"
    "    if event in ('socket.connect', 'socket.getaddrinfo'):\n"
    "        sys.stderr.write('NETWORK\\n'); sys.stderr.flush(); import os; os._exit(99)\n"
    "sys.addaudithook(_hook)"
)


@pytest.mark.parametrize("command", ["remote", "forget"])
async def test_secret_is_never_sent_over_plain_http(home: AgentHome, command: str) -> None:
    """`remote` and `forget` refuse a plain-HTTP collector off this machine with one line, before any lookup."""
    home.write_config(endpoint="http://telemetry.example.com")
    refused = await cli(home, command, prelude=NO_NETWORK)
    assert refused.code == 2, refused.err
    assert "NETWORK" not in refused.err
    [line] = refused.err.strip().splitlines()
    assert line.startswith("telemetry-agent: config error: endpoint: ")
    assert "https://" in line
    home.write_config(endpoint=["https://c1.example", "http://c2.example:8080"])
    listed = await cli(home, command, prelude=NO_NETWORK)
    assert listed.code == 2
    assert "NETWORK" not in listed.err
    assert listed.err.startswith("telemetry-agent: config error: endpoint[1]: ")


async def test_secret_goes_over_plain_http_to_this_machine_only(home: AgentHome, collector: FakeCollector) -> None:
    """A loopback collector may be plain HTTP (a local test or an SSH tunnel): `remote` reaches it."""
    home.write_config(endpoint=collector.url.replace("127.0.0.1", "localhost"))
    remote = await cli(home, "remote")
    assert remote.code == 1  # the collector answered 401: the request went out
    assert "HTTP 401" in remote.err
    assert collector.requests[0][1].startswith("/v1/installs/")


@pytest.mark.parametrize(
    ("url", "cleartext"),
    [
        ("http://127.0.0.1:8080", False),
        ("http://127.9.9.9", False),
        ("http://[::1]:8080", False),
        ("http://localhost", False),
        ("https://telemetry.example.com", False),
        ("http://telemetry.example.com", True),
        ("http://10.0.0.5:8080", True),
        ("http://localhost.example.com", True),
    ],
)
def test_secret_cleartext_means_plain_http_off_this_machine(url: str, cleartext: bool) -> None:
    """Loopback is 127.0.0.0/8, ::1 and `localhost`; everything else over http:// is cleartext on a network."""
    [endpoint] = AgentConfig(endpoint=url).endpoints
    assert endpoint.cleartext is cleartext


async def test_credentials_in_an_endpoint_are_refused_and_never_printed(home: AgentHome) -> None:
    """`http://user:pass@...` stops every command at config load (exit 2, naming the field) without echoing it."""
    home.write_config(endpoint="http://agent:hunter2@127.0.0.1:9")
    for command in ("status", "send"):
        bad = await cli(home, command)
        assert bad.code == 2
        assert bad.err.strip() == (
            "telemetry-agent: config error: endpoint: must not contain user info (user:password@); "
            "the collector needs no credentials in its URL"
        )
        assert b"hunter2" not in bad.out
    listed = await cli(home, "status", env={"TELEMETRY_ENDPOINT": "https://c1.example,https://x:hunter2@c2.example"})
    assert listed.code == 2
    assert listed.err.startswith("telemetry-agent: config error: endpoint[1]: must not contain user info")
    assert "hunter2" not in listed.err
