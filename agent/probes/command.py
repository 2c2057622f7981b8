"""Running the usage command: bounded output, one overall deadline, and the whole process group ended.

Why not ``subprocess.run(capture_output=True, timeout=...)``: it reads the whole output before anyone can
check its size (a command printing 1.5 GB took the agent to 3 GB), it waits for every holder of the stdout
pipe (a background grandchild kept it waiting until the timeout), and on timeout it kills only the direct
child, leaving grandchildren running. Here:

- the command starts in a new session, so it and everything it forks share one process group;
- stdout is read without blocking, at most ``max_bytes + 1`` bytes, so a huge answer costs 64 KiB;
- one deadline covers the whole call (start, output, exit);
- once the command has exited, what it wrote is in the pipe: it is read, and the call is done even if a
  grandchild still holds the pipe open;
- in every case the whole group is then sent SIGKILL (before the command is reaped, so its id cannot have
  been reused).

Limit: a process that starts its own session (``setsid``) leaves the group and is not ended; systemd's
``KillMode=control-group`` (the default) ends it with the service. On Windows only the command itself is
ended on timeout.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Final

__all__ = ["CommandError", "CommandTimeoutError", "run_command"]

_STEP_S: Final = 0.05  # how often the loop looks whether the command exited while no output arrives


class CommandError(Exception):
    """The command could not run, answered too much, or did not exit with status 0 (the message says which)."""


class CommandTimeoutError(CommandError):
    """The command did not finish within its deadline; it has been ended with its process group."""


def run_command(argv: tuple[str, ...], *, timeout_s: float, max_bytes: int) -> bytes:
    """The stdout of ``argv`` (no shell, stdin and stderr closed), once it exited with status 0."""
    if sys.platform == "win32":
        return _run_windows(argv, timeout_s=timeout_s, max_bytes=max_bytes)
    deadline = time.monotonic() + timeout_s
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)  # fmt: skip
    except OSError as exc:
        raise CommandError(f"cannot start ({exc.strerror or type(exc).__name__})") from None
    assert proc.stdout is not None
    try:
        output, status = _read_until_exit(proc, deadline, timeout_s, max_bytes)
    finally:
        _end_group(proc)
    if status.si_code != os.CLD_EXITED:
        raise CommandError(f"was killed by signal {status.si_status}")
    if status.si_status != 0:
        raise CommandError(f"exited with status {status.si_status}")
    return output


def _read_until_exit(proc: subprocess.Popen[bytes], deadline: float, timeout_s: float,
                     max_bytes: int) -> tuple[bytes, os.waitid_result]:  # fmt: skip
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    out = bytearray()
    eof = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CommandTimeoutError(f"timed out after {timeout_s:g} s")
        # WNOWAIT: look without reaping, so the process group id stays ours until _end_group has used it.
        exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if not eof:
            if exited is None:
                select.select([fd], [], [], min(remaining, _STEP_S))
            # After the exit everything it wrote is in the pipe: read it, and stop even if a grandchild
            # keeps the pipe open (its later output is not the command's answer).
            eof = _drain(fd, out, max_bytes) or exited is not None
        elif exited is None:
            time.sleep(min(remaining, _STEP_S))  # stdout closed, still running: wait for the exit status
        if eof and exited is not None:
            return bytes(out), exited


def _drain(fd: int, out: bytearray, max_bytes: int) -> bool:
    """Read what is available into ``out`` (never past ``max_bytes + 1``); True at end of file."""
    while True:
        try:
            chunk = os.read(fd, max_bytes + 1 - len(out))
        except BlockingIOError:
            return False
        if not chunk:
            return True
        out += chunk
        if len(out) > max_bytes:
            raise CommandError(f"answered more than {max_bytes} bytes")


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's whole process group, close the pipe and reap the command."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already empty
        os.killpg(proc.pid, signal.SIGKILL)
    assert proc.stdout is not None
    proc.stdout.close()
    with contextlib.suppress(subprocess.TimeoutExpired):  # a process stuck in the kernel: leave the zombie
        proc.wait(timeout=5)


def _run_windows(argv: tuple[str, ...], *, timeout_s: float, max_bytes: int) -> bytes:
    # No select() on pipes and no process groups to kill: a reader thread bounded by max_bytes, and the
    # command itself killed at the deadline.
    deadline = time.monotonic() + timeout_s
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError as exc:
        raise CommandError(f"cannot start ({exc.strerror or type(exc).__name__})") from None
    assert proc.stdout is not None
    out = bytearray()

    def read() -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while len(out) <= max_bytes and (chunk := os.read(fd, max_bytes + 1 - len(out))):
            out.extend(chunk)

    reader = threading.Thread(target=read, name="telemetry-command", daemon=True)
    reader.start()
    reader.join(timeout_s)
    try:
        if reader.is_alive() and len(out) <= max_bytes:
            raise CommandTimeoutError(f"timed out after {timeout_s:g} s")
        if len(out) > max_bytes:
            raise CommandError(f"answered more than {max_bytes} bytes")
        code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise CommandTimeoutError(f"timed out after {timeout_s:g} s") from None
    finally:
        proc.kill()
        proc.stdout.close()
    if code != 0:
        raise CommandError(f"exited with status {code}")
    return bytes(out)
