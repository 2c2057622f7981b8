"""Strict JSON decoding: orjson, except that a key repeated within one object is an error.

orjson (like most parsers) keeps the last value of a repeated key; other parsers keep the first or
refuse. Then the same bytes carry two meanings, and an admin who approved a batch's bytes approved
neither reading. :func:`decode_json` refuses any repeat at any depth, keys compared after unescaping
(``"a"`` and ``"\\u0061"`` are one key), naming the path of the key.

Cost. orjson does not report repeats, so they are detected around it. The fast path re-encodes the
decoded value with orjson (about 5 us for a 7 KB, 24-snapshot batch) and compares (:func:`_no_repeat`):

- the same bytes (what the agent sends: canonical JSON) mean the input had exactly the members the
  decoded value has: no repeat;
- otherwise, without a backslash in the input, each string is spelled the same in both texts, so equal
  counts of ``:`` (one per member outside strings) mean no repeat, whatever the white space;
- with escapes, equal counts of ``":`` (the end of each key) do, unless a string holds a quote or a
  quote is spaced from its colon, which leaves it unproven.

Unproven (those strings, unequal counts, nesting deeper than orjson re-encodes: 254 levels) runs the
exact scan: the stdlib decoder with an ``object_pairs_hook``, which also finds the path. It costs 3-8x
orjson (60-110 ms for 1 MB on the 2-core development machine). A valid batch never needs it (its strings
hold no quotes), so only a repeat or a crafted body pays it, within ``max_body_bytes``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson

from .errors import SchemaError

__all__ = ["decode_json", "safe_name"]

_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SPACED_COLON: Final = re.compile(rb'"[ \t\r\n]+:')


def safe_name(key: str) -> bool:
    """Whether ``key`` may be named in an error: a short identifier-like name, never free text."""
    return _NAME.fullmatch(key) is not None


def decode_json(data: bytes | str) -> Any:
    """Decode UTF-8 JSON; raise :class:`SchemaError` ``invalid_json``, or ``duplicate_key`` at the key's path."""
    if isinstance(data, str):
        try:
            data = data.encode()
        except UnicodeEncodeError:
            raise SchemaError("", "invalid_json", "not valid UTF-8 JSON (a lone surrogate)") from None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SchemaError("", "invalid_json", f"not valid UTF-8 JSON ({exc})") from None
    try:
        again = orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested deeper than orjson encodes (254 levels)
        again = b""
    if again and _no_repeat(data, again):
        return value
    path = _repeated_key(data.decode())
    if path is not None:
        raise SchemaError(path, "duplicate_key", "this key appears more than once in its object")
    return value


def _no_repeat(data: bytes, again: bytes) -> bool:
    """Cheap proof that ``data`` has no more object members than its re-encoding ``again`` (false: unproven)."""
    if again == data:
        return True
    if b"\\" not in data:
        # No escapes: every string is spelled alike in both, so only the colons outside strings (one per member)
        # can differ in number.
        return data.count(b":") == again.count(b":")
    # Escapes: count the ends of keys instead. Each member has one `"` right before its colon (a quote
    # inside a string is escaped, so `":` inside one needs an escaped quote); in ``again`` no string holds a
    # quote or a backslash before its closing quote, so its count is exact; in ``data`` it is at least the
    # number of members when no white space separates a quote from a colon.
    if b'\\"' in again or _SPACED_COLON.search(data) is not None:
        return False
    return data.count(b'":') == again.count(b'":')


class _Found:
    """The repeat found so far: the innermost container known to hold it, and the path below that container."""

    def __init__(self, holder: object, key: str) -> None:
        self.holder = holder
        self.below: list[str | int] = [key]


def _repeated_key(text: str) -> str | None:
    """The path of the first object (in order of closing) with a repeated key, or None; ``text`` is valid JSON.

    The stdlib decoder builds objects bottom-up through the hook. Once a repeat is seen, every later
    object checks whether it holds the current holder (as a value, or inside lists), and if so becomes
    the holder, so the path grows outwards to the root without a second pass over the text.
    """
    found: _Found | None = None

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        obj = dict(pairs)
        if found is not None:
            for key, value in pairs:
                where = [] if value is found.holder else _index_path(value, found.holder)
                if where is not None:
                    found.below[:0] = [key, *where]
                    found.holder = obj
                    break
        elif len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:  # pragma: no branch - a repeat exists
                if key in seen:
                    found = _Found(obj, key)
                    break
                seen.add(key)
        return obj

    try:
        root = json.loads(text, object_pairs_hook=hook)
    except RecursionError:
        # orjson accepts 1024 levels, the stdlib decoder about 1000 minus the caller's stack depth.
        raise SchemaError("", "invalid_json", "nested too deeply to check for repeated keys") from None
    if found is None:
        return None
    if root is not found.holder:
        found.below[:0] = _index_path(root, found.holder) or []
    return "".join(
        f"[{p}]" if isinstance(p, int) else f".{p if safe_name(p) else '<unknown>'}" for p in found.below
    ).removeprefix(".")


def _index_path(value: object, target: object) -> list[str | int] | None:
    """The list indices leading from ``value`` to ``target`` through nested lists only, or None."""
    if type(value) is not list:
        return None
    stack: list[tuple[list[Any], list[str | int]]] = [(value, [])]
    while stack:
        items, path = stack.pop()
        for i, item in enumerate(items):
            if item is target:
                return [*path, i]
            if type(item) is list:
                stack.append((item, [*path, i]))
    return None
