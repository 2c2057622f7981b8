"""What aiohttp does before the app sees a request: the answer to an unparsable one, and the headers of every answer.

aiohttp parses the request line and headers in its protocol (``web_protocol.RequestHandler``); a
request it cannot parse (raw UTF-8 in the path, a control character in a header, a line over 8 KiB,
TLS sent to the plain port) never reaches a middleware. ``RequestHandler.handle_error`` answers it,
by default as text/plain that quotes the offending request line or header back, ``Authorization``
included, and logs it at ERROR with the client's address. :class:`CollectorApplication` makes the
server use :class:`ErrorAnsweringProtocol` instead: the usual JSON error body, nothing echoed, a
debug log line with the error type only.

Every answer, routed or not, carries :data:`COMMON_HEADERS`: ``Server`` without versions (aiohttp's
default names the Python and aiohttp releases, which only helps an attacker pick an exploit) and
``X-Content-Type-Options: nosniff`` (a JSON error must never be sniffed into HTML by a browser).

Connections are bounded here too (:class:`ConnectionPolicy`), since a socket that never sends a
request never reaches the app: a request's head must arrive within ``header_timeout_s`` of its first
byte (slowloris), an idle connection closes after ``keepalive_timeout_s`` (aiohttp's own timer), and
at most ``max_connections`` are open: past it the longest-idle one is closed to make room, and when
none is idle the newcomer gets a 503 and is closed. So idle sockets can neither exhaust the process's
file descriptors nor lock out ``/healthz`` or a valid POST.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import logging
import resource
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = [
    "COMMON_HEADERS",
    "CONNECTION_POLICY",
    "HTTP_CODES",
    "CollectorApplication",
    "ConnectionPolicy",
    "ErrorAnsweringProtocol",
    "add_common_headers",
    "error_body",
    "fit_connections",
    "raise_open_files_limit",
    "receiving_body",
    "return_freed_memory",
    "trim_freed_memory",
]

log = logging.getLogger(__name__)

COMMON_HEADERS: Final = {"Server": "telemetry-collector", "X-Content-Type-Options": "nosniff"}
"""Headers of every answer."""
HTTP_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "too_large",
    415: "unsupported_media",
    500: "internal",
    504: "timeout",
}
"""The error code of each HTTP status aiohttp itself may answer with."""
_MESSAGES: Final = {
    400: "the request is not valid HTTP/1.1",
    500: "internal error",
    504: "the request took too long",
}


def error_body(status: int, message: str | None = None) -> bytes:
    """The JSON error body for an HTTP status aiohttp decided, with a fixed message (never request data)."""
    text = message or _MESSAGES.get(status) or HTTPStatus(status).phrase
    return orjson.dumps({"error": {"code": HTTP_CODES.get(status, "http_error"), "message": text, "path": ""}})


async def add_common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: :data:`COMMON_HEADERS` on every routed answer."""
    response.headers.update(COMMON_HEADERS)


_RESERVED_FILES: Final = 256
"""File descriptors kept for everything but client connections: the database, spool segments, logs,
the lake's PostgreSQL and S3 connections."""


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit (systemd's soft default is 1,024); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # e.g. a container refusing it: keep the soft limit, fit_connections adapts
    return soft


def fit_connections(max_connections: int) -> int:
    """``max_connections`` lowered, when needed, to fit under the open-files soft limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    room = soft // 2 if soft < 2 * _RESERVED_FILES else soft - _RESERVED_FILES
    return max(16, min(max_connections, room))


def return_freed_memory() -> None:
    """Make glibc give large freed buffers back to the OS at once (a no-op elsewhere).

    glibc serves an allocation over M_MMAP_THRESHOLD (128 KiB) with mmap and returns it on free, but
    raises the threshold after each such free (up to 32 MiB): request bodies of up to 1 MiB then come
    from the heap, and a burst of aborted uploads left RSS at 1.28 GB when idle. A fixed threshold
    keeps every body-sized buffer in its own mapping.
    """
    if _LIBC is not None:
        _LIBC.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD


def trim_freed_memory() -> None:
    """Give the free pages inside glibc's heap back to the OS (a no-op elsewhere).

    Bodies arrive in socket-sized chunks (often 64 KiB, under the mmap threshold), so a burst of
    slow or aborted uploads leaves free holes in the heap that RSS keeps counting. ``malloc_trim(0)``
    releases every free page, wherever it is; it takes about a millisecond per 100 MB of heap.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018  # glibc only: musl and other systems have no mallopt/malloc_trim
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC: Final = _load_libc()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionPolicy:
    """Limits on client connections, applied by the server before any request reaches the app."""

    max_connections: int
    """Open connections at most (see :func:`fit_connections`)."""
    header_timeout_s: float
    """Time for a request's line and headers, from their first byte."""
    count: Callable[[str], None]
    """Called with ``header_timeout``, ``evicted_idle`` or ``refused_full`` (the client events counter)."""


_FULL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nServer: telemetry-collector\r\nContent-Type: application/json\r\n"
    b"X-Content-Type-Options: nosniff\r\nRetry-After: 5\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
)


def _full_answer() -> bytes:
    body = error_body(503, "too many connections")
    return _FULL % (len(body), body)


class ErrorAnsweringProtocol(RequestHandler):
    """aiohttp's HTTP/1.1 protocol, with the JSON error answer and a deadline for each request's head."""

    __slots__ = ("_head_deadline",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def waiting_for_request(self) -> bool:
        """True while no request is being handled or queued: idle, or a head still arriving."""
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self._messages

    def data_received(self, data: bytes) -> None:
        """Feed aiohttp's parser; start the head's deadline at its first byte, cancel it once it is whole."""
        waiting = self.waiting_for_request()
        super().data_received(data)
        if not waiting:
            return  # body bytes (or a pipelined request) of a request already being handled
        if not self.waiting_for_request():
            self._cancel_head_deadline()
        elif self._head_deadline is None and isinstance(self._manager, _Server):
            policy = self._manager.policy
            self._head_deadline = self._loop.call_later(policy.header_timeout_s, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.waiting_for_request() and isinstance(self._manager, _Server):
            self._manager.policy.count("header_timeout")
            self.force_close()

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def connection_lost(self, exc: BaseException | None) -> None:
        """aiohttp's cleanup, and the head's deadline cancelled."""
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The JSON error body for ``status``; ``exc`` and ``message`` (which may quote the request) are not used.

        Called for unparsable requests (400), a handler timeout (504) and an exception that escaped the
        error middleware (500). The connection is closed afterwards, as aiohttp does.
        """
        name = type(exc).__name__ if exc is not None else "none"
        if status >= 500:
            log.error("error handling a request: %d %s", status, name)
        else:
            # Internet noise (scanners, TLS on the plain port): debug, like aiohttp's own BadHttpMethod case.
            log.debug("unparsable request: %d %s", status, name)
        if request.writer.output_size > 0:
            # Part of an answer is already out: nothing valid can follow on this connection.
            raise ConnectionError("response already started, cannot send an error instead")
        response = web.Response(
            body=error_body(status), status=status, content_type="application/json", headers=COMMON_HEADERS
        )
        response.force_close()
        return response


class _Server(web.Server):
    """The protocol factory of a listening socket, making :class:`ErrorAnsweringProtocol` connections."""

    # Set by CollectorApplication._make_handler (the instance is aiohttp's Server, its class swapped after).
    policy: ConnectionPolicy
    receiving: dict[RequestHandler, None]
    """Connections whose ingest body is arriving in pieces, oldest first (see :func:`receiving_body`)."""
    open_sockets: int
    """Connections whose socket is open: the cap counts these (aiohttp lists a closed connection until its
    handler ends, so counting its list made a flood that reconnects after each answer churn at the cap)."""

    def __call__(self) -> RequestHandler:
        return ErrorAnsweringProtocol(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        """Count the connection; past ``max_connections``, close the longest-idle one, else the slowest body."""
        super().connection_made(handler, transport)
        self.open_sockets += 1
        if self.open_sockets <= self.policy.max_connections:
            return
        # Oldest first (dicts keep insertion order): in a flood of idle sockets the first ones are idle.
        # aiohttp keeps a closed connection listed until its handler ends: skip those.
        live = (other for other in self._connections if other.transport is not None)
        for other in itertools.islice(live, _EVICTION_SCAN):
            if other is not handler and isinstance(other, ErrorAnsweringProtocol) and other.waiting_for_request():
                self.policy.count("evicted_idle")
                self._close(other)
                return
        if self.receiving:
            # The body that has been arriving longest: under a flood of slow bodies, a newcomer (a valid
            # POST, /healthz) takes its place rather than a 503 that the flood would answer by reconnecting.
            oldest = next(iter(self.receiving))
            self.policy.count("evicted_slow_body")
            self._close(oldest)
            return
        self.policy.count("refused_full")
        transport.write(_full_answer())
        self._close(handler)

    def _close(self, handler: RequestHandler) -> None:
        self.receiving.pop(handler, None)
        handler.force_close()

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        """Forget the connection."""
        self.open_sockets -= 1
        self.receiving.pop(handler, None)
        super().connection_lost(handler, exc)


_EVICTION_SCAN: Final = 64
"""Connections looked at (oldest first) for an idle one to close when full: bounded, so a full server
under a flood of new connections does not scan thousands per accept."""


@contextlib.contextmanager
def receiving_body(request: web.BaseRequest) -> Iterator[None]:
    """Mark ``request``'s connection as receiving a body in pieces for the ``with`` block (evictable when full)."""
    protocol = request.protocol
    server = getattr(protocol, "_manager", None)
    if not isinstance(server, _Server) or not isinstance(protocol, RequestHandler):
        yield
        return
    server.receiving[protocol] = None
    try:
        yield
    finally:
        server.receiving.pop(protocol, None)


with warnings.catch_warnings():
    # aiohttp discourages subclassing Application (a DeprecationWarning at class creation) in favour of
    # app state, but the handler factory below is the one place where the protocol class is chosen.
    warnings.simplefilter("ignore", DeprecationWarning)

    class CollectorApplication(web.Application):
        """A web.Application whose server answers unparsable requests with the JSON error body."""

        def _make_handler(self, **kwargs: Any) -> web.Server:
            # AppRunner (hence `serve`, tests, TestServer) builds its protocol factory here. The Server is
            # aiohttp's own, with its own arguments; only the class of the connections it makes changes.
            server = super()._make_handler(**kwargs)
            server.__class__ = _Server
            assert isinstance(server, _Server)
            server.policy = self[CONNECTION_POLICY]
            server.receiving = {}
            server.open_sockets = 0
            return server


CONNECTION_POLICY: Final = web.AppKey("collector.connection_policy", ConnectionPolicy)
"""The :class:`ConnectionPolicy` of the app's server (set by ``create_app``)."""
