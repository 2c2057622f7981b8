"""The collector's error tree. Each error carries its HTTP status and a stable code (datasette style).

Handlers only raise; one middleware (in ``app.py``) renders every error as
``{"error": {"code": ..., "message": ..., "path": ...}}`` with the class's status.

    CollectorError (500 internal)
    ├── BadRequestError (400 bad_request)       malformed JSON or gzip
    ├── UnauthorizedError (401 unauthorized)    missing or wrong token / install secret
    ├── ForbiddenError (403 forbidden)          token without the needed role
    ├── NotFoundError (404 not_found)
    ├── RequestTimeoutError (408 request_timeout)  body not received within read_timeout_s
    ├── ConflictError (409 batch_conflict)      same batch_id, different bytes
    ├── PayloadTooLargeError (413 too_large)    body over max_body_bytes after decompression
    ├── UnsupportedMediaError (415 unsupported_media)
    ├── InvalidBatchError (422 + SchemaError.code)  the batch breaks the policy or format
    ├── RateLimitedError (429 rate_limited, Retry-After)  a client address or token asks too often
    ├── OverloadedError (503 overloaded, Retry-After)
    │   └── UnavailableError (503 unavailable)  a part of the store is down (lake: PostgreSQL or the object store)
    └── ConfigError (also ValueError)           a bad setting; the CLI exits 2 with its message
        └── InUseError                          the database or spool is held by another process (exit 1)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BadRequestError",
    "CollectorError",
    "ConfigError",
    "ConflictError",
    "InUseError",
    "ForbiddenError",
    "InvalidBatchError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "RequestTimeoutError",
    "UnauthorizedError",
    "UnavailableError",
    "UnsupportedMediaError",
]


class CollectorError(Exception):
    """Root of every error the collector raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, path: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        if code is not None:
            self.code = code  # type: ignore[misc]  # per-instance refinement, e.g. a SchemaError code

    def body(self) -> dict[str, dict[str, str]]:
        """The JSON error body."""
        return {"error": {"code": self.code, "message": self.message, "path": self.path}}


class BadRequestError(CollectorError):
    """Malformed request: not JSON, broken gzip, bad parameter."""

    status, code = 400, "bad_request"


class UnauthorizedError(CollectorError):
    """No credentials, or credentials that prove nothing."""

    status, code = 401, "unauthorized"


class ForbiddenError(CollectorError):
    """Valid token, but its role may not do this."""

    status, code = 403, "forbidden"


class NotFoundError(CollectorError):
    """No such resource (never used to reveal whether an install exists)."""

    status, code = 404, "not_found"


class RequestTimeoutError(CollectorError):
    """The client did not send the whole body within ``read_timeout_s``."""

    status, code = 408, "request_timeout"


class ConflictError(CollectorError):
    """The same batch_id was already stored with different bytes."""

    status, code = 409, "batch_conflict"


class PayloadTooLargeError(CollectorError):
    """The body is over the limit (checked after decompression)."""

    status, code = 413, "too_large"


class UnsupportedMediaError(CollectorError):
    """Content type or content encoding the collector does not accept."""

    status, code = 415, "unsupported_media"


class InvalidBatchError(CollectorError):
    """The batch breaks the batch format or the policy catalogue."""

    status, code = 422, "invalid_batch"


class RateLimitedError(CollectorError):
    """One client address or token asks too often; it should retry after ``retry_after_s``."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OverloadedError(CollectorError):
    """The writer queue is full; the client should retry after ``retry_after_s``."""

    status, code = 503, "overloaded"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnavailableError(OverloadedError):
    """A part the store depends on is down (the lake's catalog or object store); retry after ``retry_after_s``."""

    code = "unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 5, part: str = "") -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.path = part


class ConfigError(CollectorError, ValueError):
    """A setting is invalid; ``path`` names it (e.g. ``port`` or ``TELEMETRY_COLLECTOR_PORT``)."""

    status, code = 500, "bad_config"


class InUseError(ConfigError):
    """The database file or spool directory is held by another process: an operational failure, not a bad setting."""
