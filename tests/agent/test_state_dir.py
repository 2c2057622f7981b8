"""The state dir is trusted only when it is the running user's and private; no link inside it is ever followed.

Real files, real ownership (``os.chown`` to ``nobody``), the real CLI in a subprocess as root, and the real CLI in a
forked process that dropped to ``nobody`` (the venv's interpreter is not readable by ``nobody``, so the child
reuses the already imported modules rather than exec-ing a new interpreter).
"""

from __future__ import annotations

import codecs
import io
import os
import shutil
import stat
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from agent.cli import main
from agent.records import OpenBatch
from agent.state import StateDir
from tests.agent.conftest import START, AgentHome, Result, cli

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="POSIX owners and modes")]
needs_root = pytest.mark.skipif(sys.platform == "win32" or os.geteuid() != 0, reason="needs root to chown files")
if sys.platform != "win32":
    import pwd

    NOBODY = pwd.getpwnam("nobody")
# A child that dropped to nobody cannot read the stdlib any more: what it imports lazily must be loaded here.
for _codec in ("ascii", "utf-8"):
    codecs.lookup(_codec)


def _chown(path: Path, uid: int, gid: int) -> None:
    for p in [path, *path.rglob("*")]:
        os.chown(p, uid, gid, follow_symlinks=False)


def _one_line(result: Result) -> str:
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


async def _sealed(home: AgentHome) -> None:
    assert (await cli(home, "collect")).code == 0
    assert (await cli(home, "seal")).code == 0


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of root's that a planted link points at: it must never change."""
    path = tmp_path / "victim"
    path.write_text("root's file\n")
    return path


@needs_root
async def test_state_dir_writable_by_others_is_refused(home: AgentHome, victim: Path) -> None:
    """A 0777 state dir made by another user, holding their `agent.lock` link to root's file: `collect` refuses
    (exit 2, one line naming the dir, what is wrong and the fix) and the link's target is untouched."""
    home.state.mkdir(mode=0o777)
    home.state.chmod(0o777)
    (home.state / "agent.lock").symlink_to(victim)
    _chown(home.state, NOBODY.pw_uid, NOBODY.pw_gid)
    refused = await cli(home, "collect")
    assert refused.code == 2
    line = _one_line(refused)
    assert str(home.state) in line
    assert "writable by others" in line
    assert "chmod 700" in line
    assert victim.read_text() == "root's file\n"
    assert sorted(p.name for p in home.state.iterdir()) == ["agent.lock"]


@needs_root
async def test_state_dir_of_another_user_is_refused_with_how_to_run_it(home: AgentHome) -> None:
    """A private dir of another user (the service user's, or one pre-made with an attacker's `secret`): root's
    command refuses with the `sudo -u` line to run, and neither the identity nor the outbox is used or touched."""
    await _sealed(home)
    secret = (home.state / "secret").read_text()
    [batch] = (home.state / "outbox").iterdir()
    _chown(home.state, NOBODY.pw_uid, NOBODY.pw_gid)
    before = sorted(str(p.relative_to(home.state)) for p in home.state.rglob("*"))
    for argv in (["status"], ["--json", "preview"], ["send"]):
        refused = await cli(home, *argv)
        assert refused.code == 2, argv
        line = _one_line(refused)
        assert str(home.state) in line
        assert "belongs to user nobody" in line
        # sudo resets the environment: the config file it named is passed on.
        assert f"`sudo -u nobody telemetry-agent --config {home.config_path} {' '.join(argv)}`" in line
        assert refused.out == b""
    assert sorted(str(p.relative_to(home.state)) for p in home.state.rglob("*")) == before
    assert batch.exists()
    assert (home.state / "secret").read_text() == secret


async def test_state_dir_group_writable_is_refused(home: AgentHome) -> None:
    """Root's own state dir with group write (mode 0770) is refused with the chmod that fixes it."""
    home.state.mkdir()
    home.state.chmod(0o770)
    refused = await cli(home, "status")
    assert refused.code == 2
    line = _one_line(refused)
    assert f"chmod 700 {home.state}" in line
    assert "mode 0770" in line


async def test_state_dir_links_inside_are_never_followed(home: AgentHome, victim: Path) -> None:
    """In root's private state dir, a link named `agent.lock` or `open.json` (left from before, or planted by
    root by mistake) stops the command naming it; nothing is written through it."""
    await _sealed(home)
    (home.state / "agent.lock").unlink()
    (home.state / "agent.lock").symlink_to(victim)
    refused = await cli(home, "collect")
    assert refused.code == 2
    line = _one_line(refused)
    assert f"{home.state / 'agent.lock'} is a symbolic link" in line
    assert victim.read_text() == "root's file\n"
    (home.state / "agent.lock").unlink()
    (home.state / "open.json").symlink_to(victim)
    preview = await cli(home, "preview")
    assert preview.code == 2
    assert f"{home.state / 'open.json'} is a symbolic link" in _one_line(preview)
    assert victim.read_text() == "root's file\n"
    (home.state / "outbox").rename(home.root / "elsewhere")
    (home.state / "outbox").symlink_to(home.root / "elsewhere")
    (home.state / "open.json").unlink()
    moved = await cli(home, "status")
    assert moved.code == 2
    assert f"{home.state / 'outbox'} is a symbolic link" in _one_line(moved)


def test_state_dir_planted_temp_file_link_receives_nothing(tmp_path: Path, victim: Path) -> None:
    """A link planted where the old code put its temp file (`.NAME.PID.tmp`) receives no batch JSON: temp files
    are created fresh (O_EXCL, O_NOFOLLOW) under unpredictable names."""
    state = StateDir(tmp_path / "state")
    (state.root / f".open.json.{os.getpid()}.tmp").symlink_to(victim)
    state.set_open_batch(OpenBatch(batch_id="b"))
    assert victim.read_text() == "root's file\n"
    assert stat.S_ISREG((state.root / "open.json").lstat().st_mode)
    assert orjson.loads((state.root / "open.json").read_bytes()) == {"batch_id": "b", "snapshots": []}


@pytest.fixture
def shared_home() -> Iterator[AgentHome]:
    """An agent home that `nobody` can reach (pytest's tmp dirs are root's alone); removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="agent-nobody-"))
    root.chmod(0o755)
    usage = root / "usage.json"
    usage.write_text('{"projects": 3, "deployments": 1200}')
    usage.chmod(0o644)
    home = AgentHome(root, {"consent": "review", "state_dir": str(root / "state"), "endpoint": "http://127.0.0.1:9",
                            "product.name": "deployserver", "product.version": "4.2.1", "usage.file": str(usage)})  # fmt: skip
    home.write_config()
    home.config_path.chmod(0o644)
    yield home
    shutil.rmtree(root)


def _run_as_nobody(home: AgentHome, *argv: str) -> Result:
    """The real CLI's main() in a forked child that dropped to `nobody` before running it."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 70
        try:
            os.close(out_r)
            os.close(err_r)
            sys.stdout = io.TextIOWrapper(io.FileIO(out_w, "w"), encoding="utf-8")
            sys.stderr = io.TextIOWrapper(io.FileIO(err_w, "w"), encoding="utf-8")
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            os.chdir("/")
            os.environ.clear()
            os.environ.update(home.env(START, HOME="/nonexistent"))
            code = main(list(argv))
        except BaseException:  # noqa: BLE001 - reported to the parent as a failure, never raised into pytest
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r, "rb") as out_f, os.fdopen(err_r, "rb") as err_f:
        out, err = out_f.read(), err_f.read()
    _, status = os.waitpid(pid, 0)
    return Result(os.waitstatus_to_exitcode(status), out, err.decode())


@needs_root
async def test_state_dir_batch_it_cannot_read_is_not_quarantined(shared_home: AgentHome) -> None:
    """The service user meets a batch it cannot read (root sealed it into the service user's dir): the command
    stops naming the file and how to fix it, and the batch stays in the outbox, never quarantined."""
    home = shared_home
    await _sealed(home)
    _chown(home.state, NOBODY.pw_uid, NOBODY.pw_gid)
    ok = _run_as_nobody(home, "--json", "status")
    assert ok.code == 0, ok.err
    [batch] = (home.state / "outbox").iterdir()
    os.chown(batch, 0, 0)
    batch.chmod(0o600)
    for command in ("preview", "status", "send"):
        refused = _run_as_nobody(home, command)
        assert refused.code == 2, refused.err
        line = _one_line(refused)
        assert f"{batch}: cannot read (Permission denied" in line
        assert "chown" in line
    assert batch.exists()
    assert list((home.state / "quarantine").iterdir()) == []
