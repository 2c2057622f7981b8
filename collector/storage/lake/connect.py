"""Connections to the lake: DuckDB with DuckLake attached, and plain PostgreSQL sessions for claims and locks.

DuckDB reaches the catalog and the object store through its ``ducklake``, ``postgres`` and ``httpfs``
extensions, loaded from the ``duckdb-extension-*`` wheels of the ``[lake]`` extra (DuckDB's official,
signed binaries for exactly the installed DuckDB) or, where a site has network access, from DuckDB's
own repository. Credentials go into temporary DuckDB secrets, never into an ``ATTACH`` string, so no
DuckDB error message can quote them; :func:`redact` keeps them out of everything else we log.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import duckdb
import psycopg

from collector.config import CollectorConfig
from collector.errors import ConfigError

__all__ = ["CATALOG_NAME", "LakeSettings", "extensions_missing", "open_duckdb", "pg_connect", "redact"]

log = logging.getLogger(__name__)

CATALOG_NAME: Final = "lake"
"""The name the lake is attached under in DuckDB; every cursor runs ``USE lake`` so the SQL is the embedded SQL."""
_EXTENSIONS: Final = (("postgres", "postgres_scanner"), ("httpfs", "httpfs"), ("ducklake", "ducklake"))
"""(wheel name, name to LOAD): the postgres extension's entry point is ``postgres_scanner``."""
_INLINE_ROWS: Final = 0
"""No commit is inlined into the catalog: every group commit writes Parquet files, before it takes the cluster's
write lock. Inlined rows are written by the catalog commit itself, i.e. under that lock: measured here, a group of
32 batches held the lock 20 ms with its 32 batch rows inlined, 10 ms with none (and 8 batches, all inlined, 29 ms).
The small files this leaves at low traffic are merged by maintenance."""
_PG_TIMEOUTS: Final = {
    "connect_timeout": "5",
    # A collector whose host vanishes holds the write lock until PostgreSQL notices: keepalives bound that to ~20 s.
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "3",
    "keepalives_count": "3",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class LakeSettings:
    """What a collector needs to reach the lake, derived from :class:`CollectorConfig` (secrets hidden from repr)."""

    host: str
    port: int
    dbname: str
    user: str
    password: str = field(default="", repr=False)
    data_path: str
    s3_endpoint: str | None = None
    s3_key_id: str | None = field(default=None, repr=False)
    s3_secret: str | None = field(default=None, repr=False)
    s3_region: str = "us-east-1"

    @classmethod
    def from_config(cls, config: CollectorConfig) -> LakeSettings:
        """Split the catalog URL and the S3 settings (``CollectorConfig`` has validated both)."""
        if config.catalog is None or config.data_path is None:
            raise ConfigError("store = ducklake needs catalog and data_path", path="catalog")
        url = urllib.parse.urlsplit(config.catalog)
        data_path = config.data_path
        if not data_path.startswith("s3://"):
            data_path = str(Path(data_path)) + "/"
        return cls(
            host=url.hostname or "",
            port=url.port or 5432,
            dbname=urllib.parse.unquote(url.path.strip("/")),
            user=urllib.parse.unquote(url.username or ""),
            password=urllib.parse.unquote(url.password or ""),
            data_path=data_path if data_path.endswith("/") else data_path + "/",
            s3_endpoint=config.s3_endpoint,
            s3_key_id=config.s3_key_id,
            s3_secret=config.s3_secret,
            s3_region=config.s3_region or "us-east-1",
        )

    @property
    def on_s3(self) -> bool:
        """True when the data files live on S3-compatible storage rather than a shared directory."""
        return self.data_path.startswith("s3://")

    @property
    def where(self) -> str:
        """The catalog and data path for messages, without any credential."""
        return f"postgresql://{self.host}:{self.port}/{self.dbname}, data {self.data_path}"

    def conninfo(self) -> str:
        """A libpq keyword string for psycopg (values quoted as libpq wants)."""
        values = {
            "host": self.host,
            "port": str(self.port),
            "dbname": self.dbname,
            "user": self.user,
            "application_name": "telemetry-collector",
            **_PG_TIMEOUTS,
        }
        if self.password:
            values["password"] = self.password
        return " ".join(f"{key}={_libpq_quote(value)}" for key, value in values.items())

    def secrets(self) -> list[str]:
        """The temporary DuckDB secrets: the catalog's PostgreSQL login and, on S3, the object store's."""
        statements = [
            "CREATE OR REPLACE TEMPORARY SECRET telemetry_catalog (TYPE postgres, "
            f"HOST {_sql(self.host)}, PORT {int(self.port)}, DATABASE {_sql(self.dbname)}, "
            f"USER {_sql(self.user)}, PASSWORD {_sql(self.password)})"
        ]
        if self.on_s3:
            options = [f"REGION {_sql(self.s3_region)}"]
            if self.s3_key_id is not None and self.s3_secret is not None:
                options += [f"KEY_ID {_sql(self.s3_key_id)}", f"SECRET {_sql(self.s3_secret)}"]
            if self.s3_endpoint is not None:
                # Non-AWS endpoints (SeaweedFS, MinIO, Ceph) want path-style addressing.
                parts = urllib.parse.urlsplit(self.s3_endpoint)
                options += [
                    f"ENDPOINT {_sql(parts.netloc)}",
                    "URL_STYLE 'path'",
                    f"USE_SSL {'true' if parts.scheme == 'https' else 'false'}",
                ]
            statements.append(f"CREATE OR REPLACE TEMPORARY SECRET telemetry_data (TYPE s3, {', '.join(options)})")
        return statements

    def attach(self) -> str:
        """The ATTACH statement (no credential in it)."""
        return (
            f"ATTACH IF NOT EXISTS 'ducklake:postgres:' AS {CATALOG_NAME} (DATA_PATH {_sql(self.data_path)}, "
            f"META_SECRET telemetry_catalog, DATA_INLINING_ROW_LIMIT {_INLINE_ROWS})"
        )

    def redact(self, text: str) -> str:
        """``text`` with every credential of these settings replaced by ``***``."""
        return redact(text, [self.password, self.s3_key_id or "", self.s3_secret or ""])


def redact(text: str, secrets: list[str]) -> str:
    """Replace each non-empty secret in ``text``, and any ``password=...`` pair, by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return re.sub(r"(?i)(password\s*=\s*)('[^']*'|\S+)", r"\1***", text)


def _sql(value: str) -> str:
    if any(ord(ch) < 32 for ch in value):
        raise ConfigError("a lake setting holds a control character", path="catalog")
    return "'" + value.replace("'", "''") + "'"


def _libpq_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _extension_file(package: str) -> Path | None:
    spec = importlib.util.find_spec(f"duckdb_extension_{package}")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    found = root / "extensions" / f"v{duckdb.__version__}" / f"{package}.duckdb_extension"
    return found if found.is_file() else None


def extensions_missing() -> str:
    """Why the lake extensions cannot load here without network access ('' when the wheels are installed)."""
    missing = [package for package, _ in _EXTENSIONS if _extension_file(package) is None]
    if not missing:
        return ""
    return (
        f"no DuckDB {duckdb.__version__} build of the {', '.join(missing)} extension(s) is installed: "
        "pip install 'onprem-telemetry[lake]'"
    )


def _load_extensions(con: Any, scratch: Path) -> None:
    for package, name in _EXTENSIONS:
        path = _extension_file(package)
        try:
            if path is not None:
                # LOAD takes the entry point from the file name (postgres -> postgres_scanner): a link under the
                # right name loads the wheel's file in place, without INSTALL copying ~100 MB per start.
                link = scratch / f"{name}.duckdb_extension"
                link.symlink_to(path)
                con.execute(f"LOAD {_sql(str(link))}")
            else:
                con.execute(f"INSTALL {name}")  # from DuckDB's repository: needs network access
                con.execute(f"LOAD {name}")
        except duckdb.Error as exc:
            raise ConfigError(
                f"store = ducklake needs DuckDB's {package} extension for DuckDB {duckdb.__version__}: "
                f"pip install 'onprem-telemetry[lake]' (it pins the matching DuckDB) or allow INSTALL {name} "
                f"({str(exc).splitlines()[0][:120]})",
                path="store",
            ) from None


def open_duckdb(settings: LakeSettings, *, threads: int = 0) -> Any:
    """An in-memory DuckDB with the lake attached as ``lake`` and selected (``USE lake``).

    Extensions load from the wheels through a private temporary directory, removed once they are
    loaded (the service user may have no home); DuckDB never auto-downloads anything.
    """
    scratch = Path(tempfile.mkdtemp(prefix="telemetry-duckdb-ext-"))
    config: dict[str, str | bool | int | float | list[str]] = {
        "extension_directory": str(scratch),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if threads:
        config["threads"] = str(threads)
    con = duckdb.connect(config=config)
    con.execute("SET enable_progress_bar = false")  # a long query would draw a progress bar into the service's log
    try:
        try:
            _load_extensions(con, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for statement in settings.secrets():
            con.execute(statement)
        # DuckLake retries a commit whose snapshot is no longer the latest: its first attempt takes the next
        # snapshot id after its own and fails when another commit took it. Beside a rival collector that is
        # most group commits (their rows were written before the write lock, so their snapshot is older than
        # the rival's commit), and maintenance and the rollup commit beside ingest (duckdb/ducklake#1094: 10
        # runs out). Under our locks the rival has committed by then, so the retry need not wait: measured
        # with bench/scaleout.py, the wait of 5 ms (2.5-5 ms a retry) held the write lock 21 ms a commit with
        # 2 collectors, no wait 17 ms (721 -> 813 batches/s in all).
        con.execute("SET ducklake_max_retry_count = 100")
        con.execute("SET ducklake_retry_wait_ms = 0")
        con.execute(settings.attach())
        con.execute(f"USE {CATALOG_NAME}")
    except duckdb.Error as exc:
        con.close()
        raise ConfigError(
            f"cannot open the lake ({settings.where}): {settings.redact(str(exc).splitlines()[0])[:300]}",
            path="catalog",
        ) from None
    except BaseException:
        con.close()
        raise
    return con


def pg_connect(settings: LakeSettings, *, lock_timeout_s: float = 10.0) -> psycopg.Connection[Any]:
    """A PostgreSQL session (autocommit) for claims, advisory locks and probes; raises ``psycopg.Error``."""
    conn = psycopg.connect(settings.conninfo(), autocommit=True)
    # A lock wait or a statement that takes longer fails instead of holding an ingest group forever.
    conn.execute(f"SET lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
    conn.execute(f"SET statement_timeout = '{int(max(30.0, lock_timeout_s * 3) * 1000)}ms'")
    return conn
