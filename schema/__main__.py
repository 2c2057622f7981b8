"""``python -m schema [--check] [--compare OLD.toml] [--catalogue PATH] [--root DIR]``: the documents of a catalogue.

Regenerates (or with ``--check`` checks) the documents derived from the catalogue (``--catalogue``, default
the packaged one) under ``--root``. ``--compare OLD.toml`` checks instead that the catalogue validly follows
an earlier version of it (see :mod:`schema.evolution`), and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .catalogue import CATALOGUE, read_catalogue
from .docs import generated_files
from .errors import SchemaError
from .evolution import check_successor


def _compare(old_path: Path, new_path: Path | None) -> int:
    try:
        old = read_catalogue(old_path)
        new = CATALOGUE if new_path is None else read_catalogue(new_path)
    except SchemaError as exc:
        print(f"python -m schema: {exc.message}", file=sys.stderr)  # the message names the file
        return 2
    try:
        check_successor(old, new)
    except SchemaError as exc:
        name = new_path or "the packaged catalogue"
        print(f"python -m schema: {name} does not follow {old_path}: {exc}", file=sys.stderr)
        return 2
    print(f"catalogue version {new.version} validly follows version {old.version} ({old_path})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Write docs/metrics.md, docs/privacy.md and the batch JSON Schemas; with --check, only report stale ones."""
    parser = argparse.ArgumentParser(prog="python -m schema", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="repository root (default: the checkout this package lives in)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="OLD.toml",
        help="check that the catalogue validly follows this earlier version; exit 2 if not",
    )
    parser.add_argument(
        "--catalogue",
        type=Path,
        metavar="PATH",
        help="a vendor's catalogue file to generate the documents for, or with --compare the new "
        "one (default: the packaged catalogue)",
    )
    args = parser.parse_args(argv)
    if args.compare is not None:
        return _compare(args.compare, args.catalogue)
    try:
        catalogue = CATALOGUE if args.catalogue is None else read_catalogue(args.catalogue)
    except SchemaError as exc:
        print(f"python -m schema: {exc.message}", file=sys.stderr)
        return 2
    stale = []
    for path, text in generated_files(args.root, catalogue).items():
        current = path.read_text("utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, "utf-8")
            print(f"wrote {path.relative_to(args.root)}")
    if args.check and stale:
        for path in stale:
            print(f"stale: {path.relative_to(args.root)} (run `python -m schema`)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
