"""A full or read-only state dir: one line naming the path and the OS error (exit 1), `status` still works, and
the state stays intact. On a real 64 KiB tmpfs, filled up or remounted read-only (needs root to mount)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.conftest import AgentHome, Result, cli, preview_batches

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="mounts a tmpfs")]
LATER_HOUR = "2026-11-28T11:05:00Z"
WRITERS = (["collect"], ["seal"], ["consent", "review"], ["approve", "--all"], ["send"])
READERS = (["status"], ["preview"], ["history"], ["consent"], ["--json", "status"])


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for the test (unmounted afterwards)."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount_point)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(path: Path) -> None:
    """Write ``path`` until the file system is full (to the last byte it accepts)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    with pytest.raises(OSError) as full:
        (path.parent / "probe").write_bytes(b"x")
    assert full.value.errno == errno.ENOSPC


def _failed_cleanly(result: Result, state: Path, os_error: str) -> None:
    assert result.code == 1, (result.code, result.err)
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"telemetry-agent: error: {state}/")
    assert lines[0].endswith(os_error)


async def _prepared(home: AgentHome, tmpfs: Path) -> bytes:
    """A state dir on the tmpfs with one sealed batch and one open batch; their preview bytes."""
    home.settings["state_dir"] = str(tmpfs / "state")
    home.write_config()
    assert (await cli(home, "collect")).code == 0
    assert (await cli(home, "seal")).code == 0
    assert (await cli(home, "collect", now=LATER_HOUR)).code == 0
    shown = await cli(home, "preview", now=LATER_HOUR)
    assert len(preview_batches(shown.out)) == 2
    return shown.out


async def _intact(home: AgentHome, before: bytes) -> None:
    assert (await cli(home, "preview", now=LATER_HOUR)).out == before
    assert (await cli(home, "collect", now=LATER_HOUR)).code == 0


async def test_full_state_dir_fails_each_write_in_one_line_and_status_still_works(home: AgentHome,
                                                                                  tmpfs: Path) -> None:  # fmt: skip
    """With the state dir's file system full, every writing command exits 1 with one line naming the path and
    `No space left on device`; reading commands (status too) work; nothing is damaged."""
    before = await _prepared(home, tmpfs)
    _fill(tmpfs / "filler")
    for argv in WRITERS:
        _failed_cleanly(await cli(home, *argv, now=LATER_HOUR), tmpfs / "state", "(No space left on device)")
    for argv in READERS:
        shown = await cli(home, *argv, now=LATER_HOUR)
        assert shown.code == 0, (argv, shown.err)
        assert shown.err == ""
    status = (await cli(home, "--json", "status", now=LATER_HOUR)).json()
    assert (status["outbox"]["batches"], status["open_batch"]["snapshots"]) == (1, 1)
    assert (await cli(home, "preview", now=LATER_HOUR)).out == before
    (tmpfs / "filler").unlink()
    await _intact(home, before)


async def test_read_only_state_dir_fails_each_write_in_one_line_and_status_still_works(home: AgentHome,
                                                                                       tmpfs: Path) -> None:  # fmt: skip
    """With the state dir's file system read-only, writing commands exit 1 with one line naming the path and
    `Read-only file system`; reading commands work, also in a read-only dir that has no lock file nor secret."""
    before = await _prepared(home, tmpfs)
    bare = tmpfs / "bare"
    for sub in ("", "outbox", "rejected", "sent", "quarantine"):
        (bare / sub).mkdir(mode=0o700)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    for argv in WRITERS:
        _failed_cleanly(await cli(home, *argv, now=LATER_HOUR), tmpfs / "state", "(Read-only file system)")
    for argv in READERS:
        shown = await cli(home, *argv, now=LATER_HOUR)
        assert shown.code == 0, (argv, shown.err)
    assert (await cli(home, "preview", now=LATER_HOUR)).out == before
    fresh = await cli(home, "status", env={"TELEMETRY_STATE_DIR": str(bare)})
    assert fresh.code == 0, fresh.err
    assert "install id:       (none yet)" in fresh.text
    assert f"problem:          no install id yet: {bare / 'secret'}: cannot write (Read-only file system)" in fresh.text
    subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
    await _intact(home, before)


async def test_daemon_on_a_full_state_dir_logs_one_line_and_carries_on(home: AgentHome, tmpfs: Path) -> None:
    """`run` on a full state dir does not die with a traceback: it logs the path and the OS error, retries,
    and once there is space again it collects and seals as scheduled; SIGTERM still stops it cleanly."""
    await _prepared(home, tmpfs)
    home.write_config(snapshot_interval_s=3600, batch_period_s=3600, send_window_s=0, consent="review")
    _fill(tmpfs / "filler")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", env=home.env(LATER_HOUR, TELEMETRY_AGENT_FAKE_SPEED="3600"),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    seen: list[bytes] = []
    while b"No space left on device" not in b"".join(seen):
        seen.append(await asyncio.wait_for(proc.stderr.readline(), 30))
    (tmpfs / "filler").unlink()
    outbox = tmpfs / "state" / "outbox"
    for _ in range(300):  # up to 30 s for the next seal (one agent hour is one real second)
        if len(list(outbox.iterdir())) > 1:
            break
        await asyncio.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    rest = await asyncio.wait_for(proc.stderr.read(), 30)
    assert await proc.wait() == 0
    log = (b"".join(seen) + rest).decode()
    assert "Traceback" not in log
    assert f"{tmpfs / 'state'}/" in log
    assert "(No space left on device); retrying" in log
    assert len(list(outbox.iterdir())) > 1
