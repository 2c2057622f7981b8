"""The collector's policy as the agent knows it: fetched from ``GET /v1/policy`` or imported from a file.

Kept in ``policy.json`` in the state dir: where it came from, when, and the policy document itself (the JSON
the collector serves). The agent uses it only to leave metrics out, never to collect more than its own
catalogue: a metric is sent only if both catalogues allow it for the batch's catalogue version. Without a
known policy the agent's own catalogue applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from schema import Catalogue, SchemaError, parse_batch, parse_policy, policy_document

from .errors import AgentError
from .files import NotRegularFileError, read_regular

__all__ = ["MAX_POLICY_BYTES", "CollectorPolicy", "PolicySource", "read_policy_file"]

PolicySource = Literal["collector", "import"]
MAX_POLICY_BYTES: Final = 1024 * 1024
"""A policy document of a few hundred metrics is ~200 KiB; anything larger is not one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorPolicy:
    """What one collector accepts: its catalogue, and where and when the agent learnt it."""

    catalogue: Catalogue
    source: PolicySource
    """``collector`` (fetched from ``GET /v1/policy``) or ``import`` (``telemetry-agent policy import FILE``)."""
    origin: str
    """The endpoint label it was fetched from, or the path of the imported file."""
    at: str
    """When it was fetched or imported (UTC, ``YYYY-MM-DDTHH:MM:SSZ``)."""

    @property
    def version(self) -> int:
        """The collector's catalogue version."""
        return self.catalogue.version

    def accepts(self, key: str, version: int) -> bool:
        """Whether the collector takes ``key`` in a batch built against catalogue ``version``."""
        return key in self.catalogue.metrics_at(version)

    def refusal(self, data: bytes) -> SchemaError | None:
        """Why the collector would refuse the batch ``data`` for a catalogue reason, or None if it takes it."""
        try:
            parse_batch(data, catalogue=self.catalogue)
        except SchemaError as exc:
            return exc
        return None

    def to_json(self) -> dict[str, Any]:
        """The summary ``status --json`` and ``policy --json`` show (the full document stays in the state dir)."""
        return {"catalogue_version": self.version, "source": self.source, "origin": self.origin, "at": self.at}

    @classmethod
    def from_state(cls, saved: Mapping[str, Any]) -> CollectorPolicy | None:
        """The policy as the state dir keeps it; None when there is none or it does not read.

        A cache only: without it the agent's own catalogue applies, which sends nothing the admin did not allow.
        """
        if not saved:
            return None
        try:
            source = saved["source"]
            if source not in ("collector", "import"):
                return None
            catalogue = parse_policy(saved["document"])
            return cls(catalogue=catalogue, source=source, origin=str(saved["origin"]), at=str(saved["at"]))
        except (KeyError, TypeError, SchemaError):
            return None

    def to_state(self) -> dict[str, Any]:
        """What the state dir keeps: where and when it was learnt, and the policy document itself."""
        return {
            "source": self.source,
            "origin": self.origin,
            "at": self.at,
            "document": policy_document(self.catalogue),
        }


def read_policy_file(path: Path, *, at: str) -> CollectorPolicy:
    """The policy document in the file ``path`` (the JSON of a collector's ``GET /v1/policy``).

    Raises :class:`AgentError` (CLI exit 2) naming the file and the field at fault.
    """
    try:
        data = read_regular(path, follow=True, limit=MAX_POLICY_BYTES + 1)
    except FileNotFoundError:
        raise AgentError(f"{path}: file not found") from None
    except NotRegularFileError as exc:
        raise AgentError(f"{path}: not a regular file ({exc.kind})") from None
    except OSError as exc:
        raise AgentError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_POLICY_BYTES:
        raise AgentError(f"{path}: larger than {MAX_POLICY_BYTES} bytes: not a policy document")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise AgentError(f"{path}: not JSON (save the body of the collector's GET /v1/policy)") from None
    try:
        catalogue = parse_policy(doc)
    except SchemaError as exc:
        raise AgentError(f"{path}: not a policy document: {exc}") from None
    return CollectorPolicy(catalogue=catalogue, source="import", origin=str(path), at=at)
