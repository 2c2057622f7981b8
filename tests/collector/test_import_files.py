"""telemetry-collector import (a real subprocess) on hostile files: odd names, FIFOs, symlinks, devices, huge files.

An export directory is whatever was copied from an air-gapped install, so the command must hold up
to anything in it: one summary line per rejected file whatever its name holds, no read of anything
but a regular file, and no read of more than ``max_body_bytes`` + 1 bytes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.collector.conftest import batch_obj, canonical, count_rows, start_server, stop_server
from tests.conftest import ROOT, load_golden

_INVALID = load_golden("v1/invalid/unknown-metric.json")


def _import(tmp_path: Path, *args: str) -> tuple[int, str, str, int]:
    """Run ``import`` to the end; returns (exit code, stdout, stderr, peak RSS in KiB).

    The child is reaped with wait4 for its own resource usage; a deadline kills it if it hangs (the FIFO
    case on a collector that opens one for reading), so a hang fails this test instead of the run.
    """
    stdout, stderr = tmp_path / "import.out", tmp_path / "import.err"
    with stdout.open("w") as out, stderr.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "collector", "import", *args], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, cwd=ROOT)  # fmt: skip
    deadline = time.monotonic() + 30
    while not (reaped := os.wait4(proc.pid, os.WNOHANG))[0]:
        if time.monotonic() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9  # reaped here: Popen must not wait for it again
            pytest.fail("import hung")
        time.sleep(0.05)
    _, status, usage = reaped
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = stdout.read_text("utf-8", errors="backslashreplace")
    return proc.returncode, text, stderr.read_text("utf-8", errors="backslashreplace"), usage.ru_maxrss


def test_import_shows_file_names_escaped_one_line_each(tmp_path: Path) -> None:
    """A newline, a terminal escape or bytes that are not UTF-8 in a file name cannot add or rewrite summary lines."""
    export = tmp_path / "export"
    export.mkdir()
    forged = "x\naccepted         9999\n.json"
    (export / forged).write_bytes(_INVALID)
    (export / "\x1b[2J\x1b[Hcleared.json").write_bytes(_INVALID)
    (export / "back\\slash.json").write_bytes(_INVALID)
    os.mkdir(export / "nested.json")  # a directory named like a batch is not a file to import
    raw = os.fsencode(export) + b"/not-utf8-\xff.json"
    with open(raw, "wb") as f:
        f.write(_INVALID)
    code, out, err, _ = _import(tmp_path, str(export), "--db", str(tmp_path / "t.duckdb"))
    assert code == 2, err
    lines = out.splitlines()
    assert lines[:3] == [f"{'accepted':<12}{0:>8}", f"{'duplicates':<12}{0:>8}", f"{'rejected':<12}{4:>8}"]
    assert lines[3] == f"  {'unknown_metric':<22}{4:>6}"
    assert sorted(lines[4:]) == sorted(
        f"  {export}/{name}: unknown_metric: {message}"
        for name, message in [
            ("x\\naccepted         9999\\n.json", _message(lines)),
            ("\\x1b[2J\\x1b[Hcleared.json", _message(lines)),
            ("back\\\\slash.json", _message(lines)),
            ("not-utf8-\\xff.json", _message(lines)),
        ]
    )
    assert "\x1b" not in out
    assert "Traceback" not in err


def _message(lines: list[str]) -> str:
    return lines[-1].split(": unknown_metric: ", 1)[1]


def test_import_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """A FIFO, a symlink and a device, in a directory or named, are each one rejected line (nothing read,
    nothing waited for); the regular file beside them is stored."""
    export = tmp_path / "export"
    export.mkdir()
    (export / "good.json").write_bytes(canonical(batch_obj()))
    os.mkfifo(export / "fifo.json")  # nobody ever writes: opening it to read would block forever
    os.mkfifo(tmp_path / "named-fifo")
    target = tmp_path / "elsewhere.json"
    target.write_bytes(canonical(batch_obj()))
    (export / "link.json").symlink_to(target)
    db = tmp_path / "t.duckdb"
    code, out, err, _ = _import(tmp_path, str(export), "/dev/null", str(tmp_path / "named-fifo"), "--db", str(db))
    assert code == 2, err
    assert out.splitlines()[:4] == [f"{'accepted':<12}{1:>8}", f"{'duplicates':<12}{0:>8}",
                                    f"{'rejected':<12}{4:>8}", f"  {'not_regular_file':<22}{4:>6}"]  # fmt: skip
    why = "not a regular file: only regular files are imported"
    assert sorted(out.splitlines()[4:]) == [
        f"  /dev/null: not_regular_file: a character device, {why}",
        f"  {export}/fifo.json: not_regular_file: a FIFO, {why}",
        f"  {export}/link.json: not_regular_file: a symbolic link, {why}",
        f"  {tmp_path}/named-fifo: not_regular_file: a FIFO, {why}",
    ]
    assert count_rows(db) == 1


def test_import_checks_the_size_before_reading(tmp_path: Path) -> None:
    """A 2 GiB sparse file is refused as too_large from its size alone: the process never holds its bytes."""
    export = tmp_path / "export"
    export.mkdir()
    huge = export / "huge.json"
    with huge.open("wb") as f:
        f.truncate(2 * 1024**3)  # sparse: no disk used, but read() would return 2 GiB of zeros
    code, out, err, peak_kib = _import(tmp_path, str(huge), "--db", str(tmp_path / "t.duckdb"))
    # A collector CLI with DuckDB loaded takes about 100 MiB; reading the file would add 2048 MiB.
    assert peak_kib < 400 * 1024, f"peak RSS {peak_kib // 1024} MiB"
    assert code == 2, err
    assert f"huge.json: too_large: the file is {2 * 1024**3} bytes, over max_body_bytes (1048576)" in out


def test_import_reads_no_more_than_the_cap(tmp_path: Path) -> None:
    """A file of exactly max_body_bytes is read (and judged); one byte more is too_large."""
    export = tmp_path / "export"
    export.mkdir()
    cap = 4096
    (export / "at-cap.json").write_bytes(b" " * cap)
    (export / "over-cap.json").write_bytes(b" " * (cap + 1))
    code, out, err, _ = _import(tmp_path, str(export), "--db", str(tmp_path / "t.duckdb"), "--max-body-bytes", str(cap))
    assert code == 2, err
    assert "at-cap.json: invalid_json" in out
    assert f"over-cap.json: too_large: the file is {cap + 1} bytes, over max_body_bytes ({cap})" in out
    with contextlib.suppress(FileNotFoundError):
        assert count_rows(tmp_path / "t.duckdb") == 0


def test_import_over_http_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """import --url (to a running collector) reads files the same way: a FIFO or a symlink is one rejected line."""
    export = tmp_path / "export"
    export.mkdir()
    (export / "good.json").write_bytes(canonical(batch_obj()))
    os.mkfifo(tmp_path / "named-fifo")
    (export / "link.json").symlink_to(export / "good.json")
    proc, url = start_server(tmp_path / "t.duckdb", "--log-level", "warning")
    try:
        code, out, err, _ = _import(tmp_path, str(export), str(tmp_path / "named-fifo"), "--url", url)
    finally:
        stop_server(proc)
    assert code == 2, err
    why = "not a regular file: only regular files are imported"
    assert out.splitlines()[:3] == [f"{'accepted':<12}{1:>8}", f"{'duplicates':<12}{0:>8}", f"{'rejected':<12}{2:>8}"]
    assert sorted(out.splitlines()[4:]) == [
        f"  {export}/link.json: not_regular_file: a symbolic link, {why}",
        f"  {tmp_path}/named-fifo: not_regular_file: a FIFO, {why}",
    ]
