"""The product's usage provider: a command, a JSON file, a local HTTP URL, or a Python callable.

Each returns the product's counts as a JSON object (``{"projects": 3, "deployments": 1200}``); the
policy step maps the keys onto catalogue metrics and drops the rest. Every kind has one overall deadline
(``usage.timeout_s``, for the whole call, not per read) and reads at most the size cap plus one byte: a
slow, huge or broken provider costs one snapshot's usage metrics, never the agent's memory or schedule.

- command: see :mod:`agent.probes.command` (process group, bounded non-blocking read);
- file: opened non-blocking and used only if it is a regular file, so a FIFO never blocks the agent
  (limit: a read from a hung network file system cannot be interrupted);
- url: one aiohttp request with a total timeout, no redirect followed (a redirect could lead anywhere,
  e.g. to a cloud metadata service), no proxy, no transparent decompression (no gzip bomb).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

import aiohttp

from agent.config import AgentConfig
from agent.files import NotRegularFileError, read_regular
from schema import SchemaError, decode_json

from .command import CommandError, CommandTimeoutError, run_command

__all__ = ["MAX_PROVIDER_BYTES", "ProviderError", "UsageProvider", "provider_from_config"]

MAX_PROVIDER_BYTES: Final = 64 * 1024
"""Largest provider answer read; a handful of counts is a few dozen bytes."""


class ProviderError(Exception):
    """The provider failed, timed out or answered something other than a JSON object."""


class UsageProvider:
    """Calls one provider kind with a timeout and returns its JSON object."""

    name = "usage"

    def __init__(self, kind: str, fetch: Callable[[], bytes | Mapping[str, object]], *, timeout_s: float) -> None:
        self.kind = kind
        self._fetch = fetch
        self._timeout_s = timeout_s

    def collect(self) -> dict[str, object]:
        """The provider's object; raises :class:`ProviderError` on any failure."""
        try:
            raw = self._fetch()
        except ProviderError:
            raise
        except TimeoutError:
            raise ProviderError(f"{self.kind} provider timed out after {self._timeout_s:g} s") from None
        except Exception as exc:  # noqa: BLE001 - any provider failure is reported the same way
            raise ProviderError(f"{self.kind} provider failed: {type(exc).__name__}") from None
        if isinstance(raw, bytes | bytearray):
            if len(raw) > MAX_PROVIDER_BYTES:
                raise ProviderError(f"{self.kind} provider answered more than {MAX_PROVIDER_BYTES} bytes")
            try:
                raw = decode_json(bytes(raw))
            except SchemaError as exc:
                if exc.code == "duplicate_key":
                    # No reading of such an answer is the product's: orjson would keep the last value.
                    raise ProviderError(f"{self.kind} provider answered the key {exc.path} more than once") from None
                raise ProviderError(f"{self.kind} provider did not answer JSON") from None
        if not isinstance(raw, Mapping):
            raise ProviderError(f"{self.kind} provider did not answer a JSON object")
        return {str(k): v for k, v in raw.items()}


def _command(argv: tuple[str, ...], timeout_s: float) -> Callable[[], bytes]:
    def fetch() -> bytes:
        try:
            return run_command(argv, timeout_s=timeout_s, max_bytes=MAX_PROVIDER_BYTES)
        except CommandTimeoutError:
            raise TimeoutError from None
        except CommandError as exc:
            raise ProviderError(f"command provider {exc}") from None

    return fetch


def _file(path: Path) -> Callable[[], bytes]:
    def fetch() -> bytes:
        try:
            # The admin may well point at a link (follow=True); a FIFO or device is refused without blocking.
            return read_regular(path, follow=True, limit=MAX_PROVIDER_BYTES + 1)
        except NotRegularFileError as exc:
            raise ProviderError(f"file provider: {path} is not a regular file ({exc.kind})") from None
        except OSError as exc:
            raise ProviderError(f"file provider: cannot read {path} ({exc.strerror or type(exc).__name__})") from None

    return fetch


async def _get(url: str, timeout_s: float) -> bytes:
    # total: one deadline for connect, headers and body together (a drip of one byte per read cannot
    # stretch it); trust_env=False: never a proxy for a loopback URL, even when HTTP(S)_PROXY is set.
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with (
        aiohttp.ClientSession(timeout=timeout, trust_env=False, auto_decompress=False) as session,
        session.get(url, allow_redirects=False, headers={"Accept-Encoding": "identity"}) as resp,
    ):
        if 300 <= resp.status < 400:
            raise ProviderError(f"url provider answered a redirect (HTTP {resp.status}), which is never followed: "
                                f"set usage.url to the final address")  # fmt: skip
        if resp.status != 200:
            raise ProviderError(f"url provider answered HTTP {resp.status}")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_PROVIDER_BYTES and (chunk := await resp.content.read(MAX_PROVIDER_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)


def _url(url: str, timeout_s: float) -> Callable[[], bytes]:
    def fetch() -> bytes:
        try:
            return asyncio.run(_get(url, timeout_s))
        except TimeoutError:
            raise  # before ClientError: aiohttp's ServerTimeoutError is both
        except aiohttp.ClientError as exc:
            raise ProviderError(f"url provider unreachable: {str(exc) or type(exc).__name__}") from None

    return fetch


class _Callable:
    """Runs a host-supplied callable in a daemon thread so a hung callable blocks neither the agent nor exit."""

    def __init__(self, func: Callable[[], Mapping[str, object]], timeout_s: float) -> None:
        self._func = func
        self._timeout_s = timeout_s
        self._running: threading.Thread | None = None

    def __call__(self) -> Mapping[str, object]:
        if self._running is not None and self._running.is_alive():
            raise ProviderError("callable provider is still running from an earlier snapshot")
        box: dict[str, object] = {}

        def call() -> None:
            try:
                box["value"] = self._func()
            except Exception as exc:  # noqa: BLE001 - reported below, in the agent thread
                box["error"] = exc

        self._running = threading.Thread(target=call, name="telemetry-provider", daemon=True)
        self._running.start()
        self._running.join(self._timeout_s)
        if self._running.is_alive():
            raise ProviderError(f"callable provider timed out after {self._timeout_s:g} s")
        if "error" in box:
            raise ProviderError(f"callable provider failed: {type(box['error']).__name__}")
        value = box.get("value")
        if not isinstance(value, Mapping):
            raise ProviderError("callable provider did not return a mapping")
        return value


def provider_from_config(
    config: AgentConfig, callable_: Callable[[], Mapping[str, object]] | None = None
) -> UsageProvider | None:
    """The provider the config names (or the given callable), or None when there is none."""
    timeout_s = config.usage_timeout_s
    if callable_ is not None:
        return UsageProvider("callable", _Callable(callable_, timeout_s), timeout_s=timeout_s)
    if config.usage_command is not None:
        return UsageProvider("command", _command(config.usage_command, timeout_s), timeout_s=timeout_s)
    if config.usage_file is not None:
        return UsageProvider("file", _file(config.usage_file), timeout_s=timeout_s)
    if config.usage_url is not None:
        return UsageProvider("url", _url(config.usage_url, timeout_s), timeout_s=timeout_s)
    return None
