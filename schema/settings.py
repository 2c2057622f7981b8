"""Typed settings: the one parser of each config field, shared by the agent's and the collector's configs.

A config is a frozen dataclass whose fields are made with :func:`setting`, each naming its :class:`Kind`:
how a text (an environment variable, a command-line flag) becomes the field's value, and how an already
typed value (a TOML file's) is checked. Both sides follow one rule for empty text: it means None for a
field that may be None (:class:`Optional`), and is parsed like any other text otherwise (an empty list,
false, or an error for a number). A kind raises :class:`ValueError` with what the value must be
("must be an integer"); the config names the field, the variable or the flag in its own error.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import orjson

__all__ = [
    "BOOLEAN",
    "FALSE",
    "INTEGER",
    "NUMBER",
    "PATH",
    "STRINGS",
    "TEXT",
    "TRUE",
    "WORDS",
    "Kind",
    "Optional",
    "kind_of",
    "setting",
]

T = TypeVar("T")

TRUE: Final = frozenset({"1", "true", "yes", "on"})
"""Texts read as true (case and surrounding spaces aside)."""
FALSE: Final = frozenset({"0", "false", "no", "off", ""})
"""Texts read as false."""


class Kind(Generic[T]):
    """How one field's value is read; subclasses override :meth:`text` and :meth:`value`."""

    def text(self, raw: str) -> T:
        """The value of ``raw``, text from the environment or the command line."""
        raise NotImplementedError

    def value(self, raw: object) -> T:
        """The value of ``raw``, already typed (a TOML file's): checked, and converted where the field needs it."""
        raise NotImplementedError


class _Text(Kind[str]):
    def text(self, raw: str) -> str:
        return raw

    def value(self, raw: object) -> str:
        if not isinstance(raw, str):
            raise ValueError("must be a string")
        return raw


class _Integer(Kind[int]):
    def text(self, raw: str) -> int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError("must be an integer") from None

    def value(self, raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError("must be an integer")
        return raw


class _Number(Kind[float]):
    def text(self, raw: str) -> float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError("must be a number") from None

    def value(self, raw: object) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValueError("must be a number")
        return float(raw)


class _Boolean(Kind[bool]):
    def text(self, raw: str) -> bool:
        word = raw.strip().lower()
        if word not in TRUE | FALSE:
            raise ValueError("must be true or false")
        return word in TRUE

    def value(self, raw: object) -> bool:
        if not isinstance(raw, bool):
            raise ValueError("must be true or false")
        return raw


class _Path(Kind[Path]):
    def text(self, raw: str) -> Path:
        return Path(raw).expanduser()

    def value(self, raw: object) -> Path:
        return self.text(TEXT.value(raw))


class _Strings(Kind[tuple[str, ...]]):
    """A list of strings: a JSON array, else ``split`` of the text (commas, or a shell-like command line)."""

    def __init__(self, *, command: bool) -> None:
        self._command = command

    def text(self, raw: str) -> tuple[str, ...]:
        stripped = raw.strip()
        if stripped.startswith("["):
            try:
                return self.value(orjson.loads(stripped))
            except orjson.JSONDecodeError:
                raise ValueError("must be a JSON array of strings") from None
        if self._command:
            try:
                return tuple(shlex.split(stripped))
            except ValueError:
                raise ValueError("must be a command line or a JSON array of strings") from None
        return tuple(part.strip() for part in stripped.split(",") if part.strip())

    def value(self, raw: object) -> tuple[str, ...]:
        if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
            raise ValueError("must be a list of strings")
        return tuple(raw)


class Optional(Kind[T | None]):
    """A field that may be None: empty text means None; anything else is read by ``kind``."""

    def __init__(self, kind: Kind[T]) -> None:
        self.kind = kind

    def text(self, raw: str) -> T | None:
        return None if raw == "" else self.kind.text(raw)

    def value(self, raw: object) -> T | None:
        return self.kind.value(raw)


TEXT: Final[Kind[str]] = _Text()
INTEGER: Final[Kind[int]] = _Integer()
NUMBER: Final[Kind[float]] = _Number()
"""A number; an integer is taken as a float."""
BOOLEAN: Final[Kind[bool]] = _Boolean()
"""``true``/``false`` in a file; in text, one of :data:`TRUE` or :data:`FALSE`."""
PATH: Final[Kind[Path]] = _Path()
"""A file system path; a leading ``~`` is the user's home."""
STRINGS: Final[Kind[tuple[str, ...]]] = _Strings(command=False)
"""A list of strings; in text, a JSON array or comma-separated."""
WORDS: Final[Kind[tuple[str, ...]]] = _Strings(command=True)
"""A command and its arguments; in text, a JSON array or a shell-like command line (quotes group words)."""


def setting(kind: Kind[Any], default: Any = None, *, factory: Any = None, secret: bool = False) -> Any:
    """A dataclass field read by ``kind``, defaulting to ``default`` (or ``factory()``).

    A ``secret`` (a password inside a URL, a key) is kept out of ``repr()``, so no log line or traceback
    that prints the config shows it.
    """
    metadata = {"kind": kind}
    if factory is not None:
        return dataclasses.field(default_factory=factory, repr=not secret, metadata=metadata)
    return dataclasses.field(default=default, repr=not secret, metadata=metadata)


def kind_of(item: dataclasses.Field[Any]) -> Kind[Any]:
    """The :class:`Kind` a field made with :func:`setting` names."""
    kind: Kind[Any] = item.metadata["kind"]
    return kind
