"""Safe file access for the state dir: private directories, no symbolic link ever followed, atomic writes.

Why: the agent runs as root or as a service user, so whoever can write its state dir could plant a link
named like one of its files and have the agent write through it (``agent.lock`` pointing at a root file),
or plant an identity of their own (``secret``). So:

- a directory is used only if it belongs to the running user and nobody else may write it
  (:func:`make_private_dir`; the state dir itself may be a link to such a directory, nothing inside may);
- every file is created fresh: ``O_EXCL | O_NOFOLLOW``, or ``mkstemp`` (which uses both) for the temp
  file of an atomic write, so a name someone planted is never opened;
- every existing file is opened with ``O_NOFOLLOW | O_NONBLOCK`` and must then be a regular file, so a
  link is refused rather than followed and a FIFO never blocks the agent.

OS errors become :class:`~agent.errors.StateError` subclasses naming the path (:func:`state_errors`).
Windows has no ``O_NOFOLLOW`` and no owner bits here: only the link and file-type checks apply there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from .errors import StateAccessError, StateError, StateIOError, StateLockedError

if sys.platform != "win32":
    import fcntl  # imported up front: a process that dropped privileges may no longer read the stdlib
    import pwd

__all__ = [
    "FileLock",
    "NotRegularFileError",
    "atomic_write",
    "fsync_dir",
    "lock_file",
    "make_private_dir",
    "open_lock",
    "read_regular",
    "state_errors",
    "user_name",
]

NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_FLAGS: Final = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
_LINK_ERRNOS: Final = frozenset({errno.ELOOP, errno.EMLINK})  # what O_NOFOLLOW gives on Linux/macOS, FreeBSD
_POSIX: Final = sys.platform != "win32"


class NotRegularFileError(OSError):
    """The path is a FIFO, socket, device or directory where a regular file was expected."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file ({kind})", str(path))
        self.kind = kind


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISLNK, "a symbolic link"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def user_name(uid: int) -> str:
    """The login name of ``uid``, or ``uid N`` when it has none."""
    if not _POSIX:
        return f"uid {uid}"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _me() -> int:
    return os.geteuid() if _POSIX else 0


def read_regular(path: Path, *, follow: bool = False, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit``); raises OSError, :class:`NotRegularFileError`.

    Opened non-blocking, so a FIFO costs one ``open`` and an ``fstat``, never a wait for a writer; and
    without following a final symbolic link unless ``follow`` (the usage file is the admin's choice).
    """
    fd = os.open(path, os.O_RDONLY | _FLAGS | (0 if follow else NOFOLLOW))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, _kind(mode))
        chunks: list[bytes] = []
        size = 0
        while limit is None or size < limit:
            chunk = os.read(fd, 1 << 16 if limit is None else min(1 << 16, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (no-op on Windows, which cannot open a directory)."""
    if not _POSIX:
        return
    fd = os.open(path, os.O_RDONLY | _FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` so that ``path`` holds either the old or the new bytes, even after a crash.

    The temp file is made by ``mkstemp`` (``O_EXCL | O_NOFOLLOW``, a random name, mode 0600) in the same
    directory, and the rename replaces whatever entry ``path`` is (a link too) without following it.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if mode != 0o600 and _POSIX:
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def open_lock(path: Path) -> tuple[int, bool]:
    """Open the lock file ``path``, creating it (``O_EXCL``) if needed, never through a link.

    Returns the descriptor and whether it is writable: on a read-only file system it is opened read-only,
    which still takes a lock (flock needs no write access), so reading commands keep working there.
    """
    while True:
        try:
            fd, writable = os.open(path, os.O_RDWR | _FLAGS | NOFOLLOW), True
        except FileNotFoundError:
            try:
                fd, writable = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _FLAGS | NOFOLLOW, 0o600), True
            except FileExistsError:
                continue  # made by another agent between our two opens: open that one
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES):
                raise
            fd, writable = os.open(path, os.O_RDONLY | _FLAGS | NOFOLLOW), False
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise NotRegularFileError(path, _kind(mode))
        return fd, writable


def lock_file(fd: int) -> bool:
    """Try to take an exclusive lock without waiting; False when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _check_dir(path: Path, st: os.stat_result, label: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise StateAccessError(
            f"{path} is a symbolic link: the agent never follows links in its state dir; "
            f"replace it with a real directory"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise StateAccessError(f"{label}{path} is {_kind(st.st_mode)}, not a directory")
    if not _POSIX:
        return
    mode = f"{stat.S_IMODE(st.st_mode):04o}"
    writers = "others" if st.st_mode & stat.S_IWOTH else "its group" if st.st_mode & stat.S_IWGRP else None
    me = user_name(_me())
    if st.st_uid != _me():
        owner = user_name(st.st_uid)
        if writers is not None:
            raise StateAccessError(
                f"{label}{path} belongs to {owner} and is writable by {writers} (mode {mode}), so anyone may have "
                f"planted files in it: move it aside and let the agent make a new one, or if you made it yourself, "
                f"`chown -R {me} {path} && chmod 700 {path}`"
            )
        raise StateAccessError(
            f"{label}{path} belongs to user {owner} (uid {st.st_uid}), not to {me} who runs this", owner=owner
        )
    if writers is not None:
        raise StateAccessError(
            f"{label}{path} is writable by {writers} (mode {mode}): make it private with `chmod 700 {path}`"
        )


def make_private_dir(path: Path, *, label: str = "", follow: bool = False, parents: bool = False) -> None:
    """Create ``path`` (mode 0700) unless it exists, then check it is the running user's and private.

    ``follow`` accepts ``path`` itself being a link to such a directory (the state dir may be one);
    raises :class:`StateAccessError` for a directory that cannot be trusted, StateIOError if it cannot be made.
    """
    with state_errors(path, "create it"):
        try:
            st = os.stat(path) if follow else os.lstat(path)
        except FileNotFoundError:
            if parents:
                path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # someone made it meanwhile: it is checked below
                os.mkdir(path, 0o700)
            st = os.stat(path) if follow else os.lstat(path)
    _check_dir(path, st, label)


def _describe(path: Path) -> str:
    for candidate in (path, path.parent):
        try:
            st = os.lstat(candidate)
        except OSError:
            continue
        where = "it" if candidate == path else f"its directory {candidate}"
        return f"{where} belongs to {user_name(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}"
    return "it cannot be examined"


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


@contextlib.contextmanager
def state_errors(path: Path, doing: str, *, root: Path | None = None) -> Iterator[None]:
    """Turn an OSError about ``path`` into a StateError that names it, in one line.

    A link or special file becomes :class:`StateAccessError` (exit 2: remove it); a permission error also
    (exit 2: give the file back to the state dir's owner); anything else, e.g. a full or read-only file
    system, :class:`StateIOError` (exit 1: an operational failure, the state itself is intact).
    """
    try:
        yield
    except StateError:
        raise
    except NotRegularFileError as exc:
        raise StateAccessError(
            f"{path} is {exc.kind}, not a regular file: the agent uses only regular files in its state dir; remove it"
        ) from None
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS and _is_link(path):
            raise StateAccessError(
                f"{path} is a symbolic link: the agent never follows links in its state dir; remove it (`rm {path}`)"
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            fix = f"`sudo chown -R {user_name(_me())} {root}`" if root is not None else "fix its owner"
            raise StateAccessError(
                f"{path}: cannot {doing} (Permission denied: {_describe(path)}); give the state "
                f"dir's files back to its owner, e.g. {fix}"
            ) from None
        raise StateIOError(f"{path}: cannot {doing} ({exc.strerror or exc})") from None


class FileLock:
    """An inter-process lock on one file (see :func:`open_lock`), re-entrant within this process."""

    def __init__(self, path: Path, root: Path) -> None:
        self._path = path
        self._root = root
        self._fd: int | None = None
        self._depth = 0
        self._mutex = threading.RLock()

    def _open(self) -> tuple[int | None, bool]:
        with state_errors(self._path, "open the lock file", root=self._root):
            try:
                return open_lock(self._path)
            except OSError as exc:
                if exc.errno != errno.EROFS:
                    raise
        # A read-only state dir without a lock file: nothing can change it, so there is nothing to lock
        # against, and reading commands (status, preview) go on.
        return None, False

    def acquire(self, wait_s: float) -> None:
        """Take the lock, waiting up to ``wait_s``; :class:`StateLockedError` names the pid holding it."""
        self._mutex.acquire()
        if self._depth:
            self._depth += 1
            return
        try:
            fd, writable = self._open()
            deadline = time.monotonic() + wait_s
            while fd is not None and not lock_file(fd):
                if time.monotonic() >= deadline:
                    os.lseek(fd, 0, os.SEEK_SET)
                    pid = os.read(fd, 16).decode("ascii", "replace").strip() or "?"
                    os.close(fd)
                    raise StateLockedError(f"state dir {self._root} is in use by pid {pid}")
                time.sleep(0.05)
            if fd is not None and writable:
                # The pid is only a hint for the "in use by pid N" message: a full disk must not stop a command.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.write(fd, str(os.getpid()).encode())
        except BaseException:
            self._mutex.release()
            raise
        self._fd = fd
        self._depth = 1

    def release(self) -> None:
        """Release one level; the last one closes the file, which drops the lock."""
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            # Closing the file drops the lock (flock and msvcrt alike).
            os.close(self._fd)
            self._fd = None
        self._mutex.release()
