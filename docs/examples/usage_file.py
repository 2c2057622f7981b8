"""Usage provider, kind *file*: the product rewrites a small JSON file; the agent reads it at each snapshot.

Call :func:`write_usage_file` whenever the counts change (or on a timer). The write is atomic (a temp
file in the same directory, then a rename) so the agent never reads half a file::

    [usage]
    file = "/var/lib/deployserver/telemetry-usage.json"

Run as a script to write the file once: ``python usage_file.py PATH PROJECTS DEPLOYMENTS``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path


def write_usage_file(path: Path, *, projects: int, deployments: int) -> None:
    """Atomically replace ``path`` with the counts (``deployments`` is cumulative: never reset it on purpose)."""
    data = json.dumps({"projects": projects, "deployments": deployments}).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # the agent may run as another user; the counts are not secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str]) -> int:
    """Write the file from the command line; one line on stderr, never a traceback, when that fails."""
    if len(argv) != 4 or not (argv[2].isdigit() and argv[3].isdigit()):
        print("usage: usage_file.py PATH PROJECTS DEPLOYMENTS (two whole numbers)", file=sys.stderr)
        return 2
    path = Path(argv[1])
    try:
        write_usage_file(path, projects=int(argv[2]), deployments=int(argv[3]))
    except OSError as exc:
        hint = f": create {path.parent} first" if not path.parent.is_dir() else ""
        print(f"usage_file.py: cannot write {path} ({exc.strerror or exc}){hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
