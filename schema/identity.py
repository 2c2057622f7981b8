"""Install identity: a random secret kept on the install, and the id derived from it.

The id is public (it is in every batch); the secret never leaves the install except as the
bearer credential of a data-subject request, over TLS, to prove ownership. Knowing an id gives
no power: the collector recomputes the id from the presented secret and compares.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from typing import Final

from .errors import SchemaError

__all__ = ["install_id_from_secret", "new_secret", "same_install"]

# Changing the label changes every install id: it is part of wire format v1.
_LABEL: Final = b"onprem-telemetry/install-id/v1\x00"
_SECRET: Final = re.compile(r"[0-9a-f]{64}")


def new_secret() -> str:
    """A fresh install secret: 256 random bits as 64 lowercase hex characters."""
    return secrets.token_hex(32)


def install_id_from_secret(secret: str) -> str:
    """The install id for a secret: the first 128 bits of SHA-256(label || secret), shown as a UUID."""
    if _SECRET.fullmatch(secret) is None:
        raise SchemaError("secret", "bad_secret", "must be 64 lowercase hex characters")
    digest = hashlib.sha256(_LABEL + bytes.fromhex(secret)).digest()
    return str(uuid.UUID(bytes=digest[:16]))


def same_install(install_id: str, secret: str) -> bool:
    """Whether ``secret`` proves ownership of ``install_id`` (constant-time; false for a malformed secret).

    ``install_id`` may be any text a client sent (a URL path segment): anything but the id is false.
    """
    try:
        expected = install_id_from_secret(secret)
    except SchemaError:
        return False
    # Bytes, not str: compare_digest raises TypeError for a str with non-ASCII characters.
    return hmac.compare_digest(expected.encode(), install_id.lower().encode("utf-8", "surrogatepass"))
