"""How one catalogue version may follow another, checked: ``python -m schema --compare OLD.toml``.

Agents and collectors of different releases interoperate only because a catalogue of version N
describes every earlier version exactly as that version did: a collector on version 3 validates a
batch of version 2 by what version 2 allowed, and an agent on version 3 trusts that a collector on
version 2 means the same thing by every key they share. So a new version may add metrics (``since``
the new version) and retire metrics (``removed_in``), and nothing else: no entry of the old catalogue
is edited or removed, no header field changes, no clause the old entries rest on changes its text.
"""

from __future__ import annotations

from dataclasses import replace

from .catalogue import Catalogue
from .errors import SchemaError

__all__ = ["check_successor"]


def check_successor(old: Catalogue, new: Catalogue) -> None:
    """Raise :class:`SchemaError` (the path names the entry) unless ``new`` validly extends ``old``.

    The same catalogue (same version, same entries) is its own successor.
    """
    if new.version < old.version:
        raise SchemaError("catalogue_version", "out_of_order", f"{new.version} is older than {old.version}")
    for name, text in old.clauses.items():
        if new.clauses.get(name) != text:
            raise SchemaError(f"clauses.{name}", "changed", "a clause of an earlier version was changed or removed")
    if dict(new.header) != dict(old.header):
        raise SchemaError("header", "changed", "the batch header fields must not change between versions")
    for key, before in old.metrics.items():
        after = new.metrics.get(key)
        if after is None:
            raise SchemaError(f"metric[{key}]", "removed", "retire a metric with `removed_in`; never delete it")
        if before.removed_in is not None and after.removed_in != before.removed_in:
            raise SchemaError(f"metric[{key}].removed_in", "changed", "a metric's retirement is final")
        if after.removed_in is not None and after.removed_in <= old.version and before.removed_in is None:
            raise SchemaError(
                f"metric[{key}].removed_in", "out_of_bounds", f"retiring needs a version after {old.version}"
            )
        # Only the retirement may be added to an entry; everything else stays as the old version had it.
        if replace(after, removed_in=before.removed_in) != before:
            raise SchemaError(f"metric[{key}]", "changed", "an entry of an earlier version was edited")
    if new.version == old.version and dict(new.metrics) != dict(old.metrics):
        raise SchemaError(
            "catalogue_version", "not_bumped", f"the catalogue changed but is still version {old.version}"
        )
    for key, entry in new.metrics.items():
        if key not in old.metrics and entry.since <= old.version:
            raise SchemaError(
                f"metric[{key}].since",
                "out_of_bounds",
                f"a metric added after version {old.version} needs since > {old.version}",
            )
