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
"""

from __future__ import annotations

import logging
import warnings
from http import HTTPStatus
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = [
    "COMMON_HEADERS",
    "HTTP_CODES",
    "CollectorApplication",
    "ErrorAnsweringProtocol",
    "add_common_headers",
    "error_body",
]

log = logging.getLogger(__name__)

COMMON_HEADERS: Final = {"Server": "telemetry-collector", "X-Content-Type-Options": "nosniff"}
"""Headers of every answer."""
HTTP_CODES: Final = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                     405: "method_not_allowed", 408: "request_timeout", 413: "too_large", 415: "unsupported_media",
                     500: "internal", 504: "timeout"}  # fmt: skip
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


class ErrorAnsweringProtocol(RequestHandler):
    """aiohttp's HTTP/1.1 protocol, except for how it answers a request it could not parse or handle."""

    __slots__ = ()

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
        response = web.Response(body=error_body(status), status=status, content_type="application/json",
                                headers=COMMON_HEADERS)  # fmt: skip
        response.force_close()
        return response


class _Server(web.Server):
    """The protocol factory of a listening socket, making :class:`ErrorAnsweringProtocol` connections."""

    def __call__(self) -> RequestHandler:
        return ErrorAnsweringProtocol(self, loop=self._loop, **self._kwargs)


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
            return server
