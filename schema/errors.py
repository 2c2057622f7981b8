"""The one error the contract raises: a batch or catalogue that breaks the rules, with its JSON path."""

from __future__ import annotations

__all__ = ["SchemaError"]


class SchemaError(ValueError):
    """A value that the policy or the batch format does not allow.

    Attributes:
        path: where in the JSON document the problem is, e.g. ``snapshots[3].metrics.os.version``
            (empty for the document itself).
        code: a stable machine-readable reason, e.g. ``unknown_metric`` or ``out_of_bounds``.
        message: a one-line human explanation.
    """

    def __init__(self, path: str, code: str, message: str) -> None:
        super().__init__(f"{path or '<document>'}: {message}")
        self.path = path
        self.code = code
        self.message = message
