"""The collector's policy as the agent knows it: fetched from ``GET /v1/policy`` or imported from a file.

Kept in ``policy.json`` in the state dir: where it came from, when, and the policy document itself (the JSON
the collector serves). The agent uses it only to leave metrics out, never to collect more than its own
catalogue: a metric is sent only if both catalogues allow it for the batch's catalogue version. Without a
known policy the agent's own catalogue applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from schema import Catalogue, SchemaError, parse_batch, parse_policy, policy_document

from .errors import AgentError, StateError
from .files import NotRegularFileError, read_regular
from .state import StateDir

__all__ = ["MAX_POLICY_BYTES", "CollectorPolicy", "PolicySource", "load_policy", "read_policy_file", "store_policy"]

PolicySource = Literal["collector", "import"]
MAX_POLICY_BYTES: Final = 1024 * 1024
"""A policy document of a few hundred metrics is ~200 KiB; anything larger is not one."""
_FILE: Final = "policy.json"


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


def load_policy(state: StateDir) -> CollectorPolicy | None:
    """The stored policy, or None when there is none or it is unreadable (the next fetch or import rewrites it).

    A cache only: without it the agent's own catalogue applies, which sends nothing the admin did not allow.
    """
    try:
        saved = state.read(_FILE, {})
    except StateError:
        return None
    if not saved:
        return None
    try:
        source = saved["source"]
        if source not in ("collector", "import"):
            return None
        return CollectorPolicy(catalogue=parse_policy(saved["document"]), source=source, origin=str(saved["origin"]),
                               at=str(saved["at"]))  # fmt: skip
    except (KeyError, TypeError, SchemaError):
        return None


def store_policy(state: StateDir, policy: CollectorPolicy) -> None:
    """Keep ``policy`` in the state dir (atomically, like all state)."""
    state.write(_FILE, {"source": policy.source, "origin": policy.origin, "at": policy.at,
                        "document": policy_document(policy.catalogue)})  # fmt: skip


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
