"""A full database disk: acknowledged batches wait in set-aside segments, are retried, and erasure covers them.

The database lives on a 4 MiB tmpfs filled to the last byte, the spool on the ordinary disk, so a POST is
still acknowledged (durable in the spool) while every load into DuckDB fails. Needs root for ``mount``:
skipped otherwise, except under CI (``CI=1``), where a missing mount fails the test instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from collector import CollectorConfig, open_storage
from collector.storage.tokens import create_token
from schema import install_id_from_secret, new_secret
from tests.collector.conftest import BATCHES, batch_obj, canonical, start_server, stop_server

pytestmark = pytest.mark.slow

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted in tmp_path (unmounted afterwards)."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "1":
            pytest.fail("the disk-full tests need root (mount -t tmpfs) under CI")
        pytest.skip("the disk-full tests need root to mount a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with one file; returns it (delete it to give the space back)."""
    filler = disk / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return filler


def _call(url: str, method: str = "GET", body: bytes | None = None, bearer: str = "") -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _OPENER.open(request, timeout=30) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def _wait_ready(url: str, ready: bool) -> None:
    # Polls a state change (a load failing three times, a retry succeeding); bounded so a bug fails, not hangs.
    for _ in range(600):
        if (_call(url + "/readyz")[0] == 200) == ready:
            return
        time.sleep(0.1)
    raise AssertionError(f"/readyz never became {'ready' if ready else 'not ready'}")


def _install() -> tuple[str, dict[str, Any]]:
    secret = new_secret()
    return secret, batch_obj(install_id=install_id_from_secret(secret))


def _spool_text(spool: Path) -> str:
    return "".join(p.read_text("utf-8", errors="replace") for p in spool.iterdir() if p.is_file())


def test_disk_full_erasure_waits_for_set_aside_segments_and_retry_loses_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    """While a segment is set aside, /v1/installs answers 503 (as any refused write does, never a 500); once space
    is back the segment is loaded by itself, and the erasure covers it."""
    db, spool = small_disk / "t.duckdb", tmp_path / "spool"
    with open_storage(CollectorConfig(db_path=db, spool_dir=spool)) as store:
        _, admin = store.write_sync(lambda con: create_token(con, "admin", dt.datetime.now(dt.UTC)))
    proc, url = start_server(db, "--spool-dir", str(spool), "--load-interval-s", "0.1", "--log-level", "warning")
    try:
        filler = _fill(small_disk)
        (secret_a, a), (secret_b, b) = _install(), _install()
        for obj in (a, b):
            status, receipt = _call(url + BATCHES, "POST", canonical(obj))
            assert status == 200, receipt
        _wait_ready(url, ready=False)
        assert any(p.name.endswith(".failed") for p in spool.iterdir())
        install_a = f"{url}/v1/installs/{a['install_id']}"
        status, answer = _call(install_a, "DELETE", bearer=secret_a)
        assert status == 503, answer  # never "0 batches deleted" while a copy sits in a set-aside segment
        assert answer["error"]["path"] == "database"
        assert _call(install_a, bearer=secret_a)[0] == 503
        assert a["batch_id"] in _spool_text(spool)
        status, answer = _call(url + "/v1/tokens", "POST", b'{"role": "analyst"}', bearer=admin)
        assert (status, answer["error"]["code"], answer["error"]["path"]) == (503, "unavailable", "database")

        filler.unlink()
        _wait_ready(url, ready=True)  # the set-aside segment was retried by itself
        assert not any(p.name.endswith(".failed") for p in spool.iterdir())
        status, held = _call(f"{url}/v1/installs/{b['install_id']}", bearer=secret_b)
        assert status == 200
        assert [x["batch_id"] for x in held["batches"]] == [b["batch_id"]]
        status, answer = _call(install_a, "DELETE", bearer=secret_a)
        assert (status, answer["deleted"]) == (200, {"batches": 1, "snapshots": 24})
        assert a["batch_id"] not in _spool_text(spool)
    finally:
        code, err = stop_server(proc)
    assert code == 0, err
    assert "Traceback" not in err
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT CAST(batch_id AS VARCHAR) FROM batches").fetchall()
    assert rows == [(b["batch_id"],)]


def test_disk_full_set_aside_segment_is_loaded_after_a_restart(small_disk: Path, tmp_path: Path) -> None:
    """A segment set aside before a crash survives it: the collector starts on the full disk, not ready, and
    loads the segment once space is back; a resend of its batch is still a duplicate."""
    db, spool = small_disk / "t.duckdb", tmp_path / "spool"
    args = ("--spool-dir", str(spool), "--load-interval-s", "0.1", "--log-level", "warning")
    proc, url = start_server(db, *args)
    try:
        filler = _fill(small_disk)
        secret, obj = _install()
        assert _call(url + BATCHES, "POST", canonical(obj))[0] == 200
        _wait_ready(url, ready=False)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    proc, url = start_server(db, *args)
    try:
        status, answer = _call(url + "/readyz")
        assert (status, answer["error"]["path"]) == (503, "database")
        assert _call(f"{url}/v1/installs/{obj['install_id']}", bearer=secret)[0] == 503
        status, receipt = _call(url + BATCHES, "POST", canonical(obj))
        assert (status, receipt["duplicate"]) == (200, True)  # known from the set-aside segment
        filler.unlink()
        _wait_ready(url, ready=True)
        status, held = _call(f"{url}/v1/installs/{obj['install_id']}", bearer=secret)
        assert status == 200
        assert [x["batch_id"] for x in held["batches"]] == [obj["batch_id"]]
        status, receipt = _call(url + BATCHES, "POST", canonical(batch_obj()))
        assert (status, receipt["duplicate"]) == (200, False)
    finally:
        code, err = stop_server(proc)
    assert code == 0, err
    assert not list(spool.glob("*.failed"))
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM batches").fetchone() == (2,)
