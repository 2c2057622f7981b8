"""Running the usage command: bounded output, one overall deadline, and the whole process group ended.

Why not ``subprocess.run(capture_output=True, timeout=...)``: it reads the whole output before anyone can
check its size (a command printing 1.5 GB took the agent to 3 GB), it waits for every holder of the stdout
pipe (a background grandchild kept it waiting until the timeout), and on timeout it kills only the direct
child, leaving grandchildren running. Here:

- the command starts in a new session, so it and everything it forks share one process group;
- stdout is read without blocking, at most ``max_bytes + 1`` bytes, so a huge answer costs 64 KiB;
- stderr is read alongside (else a chatty command would block on a full pipe), and only its first
  ``_MAX_STDERR_BYTES`` are kept: a failure names the first line, which is what says why;
- one deadline covers the whole call (start, output, exit);
- once the command has exited, what it wrote is in the pipes: it is read, and the call is done even if a
  grandchild still holds a pipe open;
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

__all__ = ["CommandError", "CommandTimeoutError", "first_line", "run_command"]

_STEP_S: Final = 0.05  # how often the loop looks whether the command exited while no output arrives
_MAX_STDERR_BYTES: Final = 4096  # enough for the first line of an error; the rest is read and thrown away
_MAX_REASON_CHARS: Final = 200


class CommandError(Exception):
    """The command could not run, answered too much, or did not exit with status 0 (the message says which,
    with the first line of its stderr when it wrote one)."""


class CommandTimeoutError(CommandError):
    """The command did not finish within its deadline; it has been ended with its process group."""


def first_line(data: bytes) -> str:
    """The first non-empty line of ``data``, printable and at most 200 characters ('' when there is none)."""
    for line in data.decode("utf-8", "replace").splitlines():
        text = "".join(ch if ch.isprintable() else "?" for ch in line.strip())
        if text:
            return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 3] + "..."
    return ""


def _failed(what: str, stderr: bytes) -> CommandError:
    said = first_line(stderr)
    return CommandError(f"{what}: {said}" if said else what)


def run_command(argv: tuple[str, ...], *, timeout_s: float, max_bytes: int) -> bytes:
    """The stdout of ``argv`` (no shell, stdin closed), once it exited with status 0."""
    if sys.platform == "win32":
        return _run_windows(argv, timeout_s=timeout_s, max_bytes=max_bytes)
    deadline = time.monotonic() + timeout_s
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise CommandError(f"cannot start ({exc.strerror or type(exc).__name__})") from None
    try:
        output, stderr, status = _read_until_exit(proc, deadline, timeout_s, max_bytes)
    finally:
        _end_group(proc)
    if status.si_code != os.CLD_EXITED:
        raise _failed(f"was killed by signal {status.si_status}", stderr)
    if status.si_status != 0:
        raise _failed(f"exited with status {status.si_status}", stderr)
    return output


def _read_until_exit(
    proc: subprocess.Popen[bytes], deadline: float, timeout_s: float, max_bytes: int
) -> tuple[bytes, bytes, os.waitid_result]:
    assert proc.stdout is not None
    assert proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    out, err = bytearray(), bytearray()
    open_fds = {out_fd, err_fd}
    for fd in open_fds:
        os.set_blocking(fd, False)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CommandTimeoutError(f"timed out after {timeout_s:g} s")
        # WNOWAIT: look without reaping, so the process group id stays ours until _end_group has used it.
        exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if open_fds:
            if exited is None:
                select.select(list(open_fds), [], [], min(remaining, _STEP_S))
            if out_fd in open_fds and _drain(out_fd, out, max_bytes):
                open_fds.discard(out_fd)
            if err_fd in open_fds and _drain(err_fd, err, _MAX_STDERR_BYTES, keep_going=True):
                open_fds.discard(err_fd)
            if exited is not None:
                # After the exit everything it wrote is in the pipes and has just been read: stop even if a
                # grandchild keeps a pipe open (its later output is not the command's answer).
                open_fds.clear()
        elif exited is None:
            time.sleep(min(remaining, _STEP_S))  # both pipes closed, still running: wait for the exit status
        if not open_fds and exited is not None:
            return bytes(out), bytes(err), exited


def _drain(fd: int, out: bytearray, max_bytes: int, *, keep_going: bool = False) -> bool:
    """Read what is available into ``out`` (never past ``max_bytes + 1``); True at end of file.

    Beyond ``max_bytes`` the answer is too much (:class:`CommandError`), or with ``keep_going`` the rest
    is read and dropped, so the command never blocks on a full pipe.
    """
    while True:
        try:
            chunk = os.read(fd, 1 << 16 if keep_going else max_bytes + 1 - len(out))
        except BlockingIOError:
            return False
        if not chunk:
            return True
        if keep_going:
            out += chunk[: max(0, max_bytes - len(out))]
            continue
        out += chunk
        if len(out) > max_bytes:
            raise CommandError(f"answered more than {max_bytes} bytes")


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's whole process group, close the pipes and reap the command."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already empty
        os.killpg(proc.pid, signal.SIGKILL)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    with contextlib.suppress(subprocess.TimeoutExpired):  # a process stuck in the kernel: leave the zombie
        proc.wait(timeout=5)


def _run_windows(argv: tuple[str, ...], *, timeout_s: float, max_bytes: int) -> bytes:
    # No select() on pipes and no process groups to kill: reader threads bounded by max_bytes (stderr: its
    # first bytes kept, the rest dropped), and the command itself killed at the deadline.
    deadline = time.monotonic() + timeout_s
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise CommandError(f"cannot start ({exc.strerror or type(exc).__name__})") from None
    assert proc.stdout is not None
    assert proc.stderr is not None
    out, err = bytearray(), bytearray()

    def read() -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while len(out) <= max_bytes and (chunk := os.read(fd, max_bytes + 1 - len(out))):
            out.extend(chunk)

    def read_err() -> None:
        assert proc.stderr is not None
        try:
            while chunk := os.read(proc.stderr.fileno(), 1 << 16):
                err.extend(chunk[: max(0, _MAX_STDERR_BYTES - len(err))])
        except OSError:
            pass  # the pipe broke: what was read is what there is
        finally:
            proc.stderr.close()  # here, not in the caller: this thread may still be reading

    reader = threading.Thread(target=read, name="telemetry-command", daemon=True)
    err_reader = threading.Thread(target=read_err, name="telemetry-command-stderr", daemon=True)
    reader.start()
    err_reader.start()
    reader.join(timeout_s)
    try:
        if reader.is_alive() and len(out) <= max_bytes:
            raise CommandTimeoutError(f"timed out after {timeout_s:g} s")
        if len(out) > max_bytes:
            raise CommandError(f"answered more than {max_bytes} bytes")
        code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        err_reader.join(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise CommandTimeoutError(f"timed out after {timeout_s:g} s") from None
    finally:
        proc.kill()
        proc.stdout.close()
    if code != 0:
        raise _failed(f"exited with status {code}", bytes(err))
    return bytes(out)
