"""``python -m schema [--check]``: regenerate (or check) the documents derived from the catalogue."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .docs import generated_files


def main(argv: list[str] | None = None) -> int:
    """Write docs/metrics.md and schema/batch-v1.schema.json; with --check, only report stale ones."""
    parser = argparse.ArgumentParser(prog="python -m schema", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="repository root (default: the checkout this package lives in)")  # fmt: skip
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_files(args.root).items():
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
