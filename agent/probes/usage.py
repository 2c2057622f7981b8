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
from typing import Final, Literal

import aiohttp

from agent.config import AgentConfig
from agent.files import NotRegularFileError, read_regular
from schema import SchemaError, decode_json

from .command import CommandError, CommandTimeoutError, first_line, run_command

__all__ = ["MAX_PROVIDER_BYTES", "ProviderError", "ProviderKind", "UsageProvider", "provider_from_config"]

MAX_PROVIDER_BYTES: Final = 64 * 1024
"""Largest provider answer read; a handful of counts is a few dozen bytes."""
ProviderKind = Literal["command", "file", "url", "callable"]


class ProviderError(Exception):
    """The provider failed, timed out or answered something other than a JSON object.

    The message names the provider (its kind and its command, file or URL) and the reason, e.g.
    ``command provider /opt/app/bin/stats: exited with status 1: database is locked``. It is shown
    to the admin only (``collect``, ``status``, the daemon's log), never sent.
    """


class UsageProvider:
    """Calls one provider kind with a timeout and returns its JSON object."""

    name = "usage"

    def __init__(
        self,
        kind: ProviderKind,
        fetch: Callable[[], bytes | Mapping[str, object]],
        *,
        timeout_s: float,
        where: str | None = None,
    ) -> None:
        self.kind: ProviderKind = kind
        self.where = where
        """The command (its program), file or URL, as configured; None for a callable."""
        self._fetch = fetch
        self._timeout_s = timeout_s

    @property
    def label(self) -> str:
        """How messages name this provider: ``file provider /var/lib/app/usage.json``."""
        return f"{self.kind} provider" + (f" {self.where}" if self.where else "")

    def collect(self) -> dict[str, object]:
        """The provider's object; raises :class:`ProviderError` (naming the provider and why) on any failure."""
        try:
            raw = self._fetch()
        except ProviderError as exc:
            raise ProviderError(f"{self.label}: {exc}") from None
        except TimeoutError:
            raise ProviderError(f"{self.label}: timed out after {self._timeout_s:g} s") from None
        except Exception as exc:  # noqa: BLE001 - any provider failure is reported the same way
            raise ProviderError(f"{self.label}: failed: {_describe(exc)}") from None
        if isinstance(raw, bytes | bytearray):
            if len(raw) > MAX_PROVIDER_BYTES:
                raise ProviderError(f"{self.label}: answered more than {MAX_PROVIDER_BYTES} bytes")
            try:
                raw = decode_json(bytes(raw))
            except SchemaError as exc:
                if exc.code == "duplicate_key":
                    # No reading of such an answer is the product's: orjson would keep the last value.
                    raise ProviderError(f"{self.label}: answered the key {exc.path} more than once") from None
                raise ProviderError(f"{self.label}: did not answer JSON") from None
        if not isinstance(raw, Mapping):
            raise ProviderError(f"{self.label}: did not answer a JSON object")
        return {str(k): v for k, v in raw.items()}


def _describe(exc: BaseException) -> str:
    """``ValueError: the first line of its message`` (just the type when there is no message)."""
    said = first_line(str(exc).encode())
    return f"{type(exc).__name__}: {said}" if said else type(exc).__name__


def _command(argv: tuple[str, ...], timeout_s: float) -> Callable[[], bytes]:
    def fetch() -> bytes:
        try:
            return run_command(argv, timeout_s=timeout_s, max_bytes=MAX_PROVIDER_BYTES)
        except CommandTimeoutError:
            raise TimeoutError from None
        except CommandError as exc:
            raise ProviderError(str(exc)) from None

    return fetch


def _file(path: Path) -> Callable[[], bytes]:
    def fetch() -> bytes:
        try:
            # The admin may well point at a link (follow=True); a FIFO or device is refused without blocking.
            return read_regular(path, follow=True, limit=MAX_PROVIDER_BYTES + 1)
        except NotRegularFileError as exc:
            raise ProviderError(f"not a regular file ({exc.kind})") from None
        except OSError as exc:
            raise ProviderError(f"cannot read ({exc.strerror or type(exc).__name__})") from None

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
            raise ProviderError(
                f"answered a redirect (HTTP {resp.status}), which is never followed: set usage.url to the final address"
            )
        if resp.status != 200:
            raise ProviderError(f"answered HTTP {resp.status} {resp.reason or ''}".rstrip())
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
            raise ProviderError(f"unreachable: {first_line(str(exc).encode()) or type(exc).__name__}") from None

    return fetch


class _Callable:
    """Runs a host-supplied callable in a daemon thread so a hung callable blocks neither the agent nor exit."""

    def __init__(self, func: Callable[[], Mapping[str, object]], timeout_s: float) -> None:
        self._func = func
        self._timeout_s = timeout_s
        self._running: threading.Thread | None = None

    def __call__(self) -> Mapping[str, object]:
        if self._running is not None and self._running.is_alive():
            raise ProviderError("still running from an earlier snapshot")
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
            raise TimeoutError
        error = box.get("error")
        if isinstance(error, BaseException):
            raise ProviderError(f"failed: {_describe(error)}")
        value = box.get("value")
        if not isinstance(value, Mapping):
            raise ProviderError("did not return a mapping")
        return value


def provider_from_config(
    config: AgentConfig, callable_: Callable[[], Mapping[str, object]] | None = None
) -> UsageProvider | None:
    """The provider the config names (or the given callable), or None when there is none."""
    timeout_s = config.usage_timeout_s
    if callable_ is not None:
        return UsageProvider("callable", _Callable(callable_, timeout_s), timeout_s=timeout_s)
    if config.usage_command is not None:
        return UsageProvider(
            "command", _command(config.usage_command, timeout_s), timeout_s=timeout_s, where=config.usage_command[0]
        )
    if config.usage_file is not None:
        return UsageProvider("file", _file(config.usage_file), timeout_s=timeout_s, where=str(config.usage_file))
    if config.usage_url is not None:
        return UsageProvider("url", _url(config.usage_url, timeout_s), timeout_s=timeout_s, where=config.usage_url)
    return None
