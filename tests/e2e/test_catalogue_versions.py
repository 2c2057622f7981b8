"""Catalogue versions with real processes: the agent CLI and `telemetry-collector serve`, in every order of upgrade.

tests/data/catalogues/v2.toml is version 2 of the packaged catalogue (version 1): it adds `usage.environments`
and retires `host.disk.free_gib`. An agent or collector "at v2" runs with that file as its `catalogue` setting.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import DATA
from tests.e2e.collector_proc import RunningCollector, running_collector

pytestmark = pytest.mark.slow

V2 = DATA / "catalogues" / "v2.toml"
NEW, RETIRED = "usage.environments", "host.disk.free_gib"
# Hours a few days back: in the collector's past (it refuses batches from the future) and well within retention.
T0 = dt.datetime.now(dt.UTC).replace(minute=5, second=0, microsecond=0) - dt.timedelta(days=3)


def _at(hours: int) -> str:
    return (T0 + dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Install:
    """One install's agent: its state dir and settings, run as `python -m agent` subprocesses."""

    def __init__(self, root: Path, endpoint: str | None, *, catalogue: Path | None = None) -> None:
        usage = root / "usage.json"
        usage.parent.mkdir(parents=True, exist_ok=True)
        usage.write_text('{"projects": 7, "deployments": 1234, "environments": 3}')
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_") and k != "DO_NOT_TRACK"}
        self.env.update({
            "TELEMETRY_STATE_DIR": str(root / "state"),
            "TELEMETRY_PRODUCT_NAME": "deployserver",
            "TELEMETRY_PRODUCT_VERSION": "4.2.1",
            "TELEMETRY_USAGE_FILE": str(usage),
            "TELEMETRY_AGENT_FAKE_HOST": str(DATA / "psutil" / "linux-debian12.json"),
            "TELEMETRY_AGENT_CONFIG": str(root / "none.toml"),
        })  # fmt: skip
        (root / "none.toml").write_text("")
        if endpoint is not None:
            self.env["TELEMETRY_ENDPOINT"] = endpoint
        self.upgrade(catalogue)

    def upgrade(self, catalogue: Path | None) -> None:
        """Run from now on with ``catalogue`` (None: the packaged one), as a product release would ship it."""
        self.env.pop("TELEMETRY_CATALOGUE", None)
        if catalogue is not None:
            self.env["TELEMETRY_CATALOGUE"] = str(catalogue)

    def run(self, *args: str, hour: int = 0, code: int = 0) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([sys.executable, "-m", "agent", *args], env={**self.env, "TELEMETRY_AGENT_FAKE_NOW": _at(hour)},
                              capture_output=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == code, (args, done.stdout.decode(), done.stderr.decode())
        return done

    def json(self, *args: str, hour: int = 0) -> Any:
        return orjson.loads(self.run("--json", *args, hour=hour).stdout)

    def states(self) -> dict[str, str]:
        return {m["key"]: m["state"] for m in self.json("metrics")["metrics"]}


def _snapshots(held: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(held["snapshots"], key=lambda s: s["taken_at"])


def test_v2_agent_to_v1_collector_leaves_the_new_metric_out(tmp_path: Path) -> None:
    """An agent upgraded first (catalogue v2) learns the v1 collector's policy before it seals: the batch is
    accepted, without the metric the collector does not know; status counts it, `metrics` says why."""
    with running_collector(tmp_path) as collector:
        install = Install(tmp_path / "install", collector.url, catalogue=V2)
        install.run("consent", "auto")
        collected = install.json("collect")
        assert collected["metrics"][NEW] == 3  # no policy known yet: the agent's own catalogue applies
        assert RETIRED not in collected["metrics"]
        install.run("seal")  # fetches GET /v1/policy first, and leaves out what it does not accept
        [result] = install.json("send")["results"]
        assert result["outcome"] == "delivered"
        [snapshot] = install.json("remote")["snapshots"]
        assert NEW not in snapshot["metrics"]
        assert RETIRED not in snapshot["metrics"]
        assert snapshot["metrics"]["usage.projects"] == 7
        states = install.states()
        assert (states[NEW], states[RETIRED], states["usage.projects"]) == ("not_accepted", "retired", "collected")
        second = install.json("collect", hour=1)
        assert NEW not in second["metrics"]
        assert ("not_accepted", NEW) in {(d["reason"], d["key"]) for d in second["dropped"]}
        status = install.json("status", hour=1)
        assert status["counters"]["dropped_keys"]["not_accepted"]["keys"][NEW] == 2  # at the seal, then the collect
        assert status["metrics"]["not_accepted"] == [NEW]
        assert status["metrics"]["collector"]["catalogue_version"] == 1
        assert "not accepted:      usage.environments" in install.run("status", hour=1).stdout.decode()


def test_v1_agent_to_v2_collector_is_accepted(tmp_path: Path) -> None:
    """A collector upgraded first (catalogue v2) takes a v1 agent's batch, the metric v2 retired included."""
    with running_collector(tmp_path, env={"TELEMETRY_COLLECTOR_CATALOGUE": str(V2)}) as collector:
        assert collector.get("/v1/policy")["catalogue_version"] == 2
        install = Install(tmp_path / "install", collector.url)
        install.run("consent", "auto")
        install.run("collect")
        install.run("seal")
        assert [r["outcome"] for r in install.json("send")["results"]] == ["delivered"]
        held = install.json("remote")
        [snapshot] = held["snapshots"]
        assert RETIRED in snapshot["metrics"]
        assert NEW not in snapshot["metrics"]
        assert [b["catalogue_version"] for b in held["batches"]] == [1]
        assert set(install.states().values()) == {"collected"}


def _upgraded_install(tmp_path: Path, collector: RunningCollector, mode: str) -> Install:
    """An install that consented at v1 and sent one batch (in `mode`), then upgraded to the v2 catalogue."""
    install = Install(tmp_path / "install", collector.url)
    install.run("consent", mode)
    install.run("collect")
    install.run("seal")
    if mode == "review":
        install.run("approve", "--all")
    assert [r["outcome"] for r in install.json("send")["results"]] == ["delivered"]
    install.upgrade(V2)
    return install


def test_consent_at_v1_then_upgrade_holds_the_new_metric_until_approved(tmp_path: Path) -> None:
    """After the upgrade the new metric is not collected but listed as awaiting approval (metrics, status, preview
    --explain); once approved it is collected, sent and stored, and GET /v1/installs/ID shows it."""
    env = {"TELEMETRY_COLLECTOR_CATALOGUE": str(V2), "TELEMETRY_COLLECTOR_MIN_GROUP_SIZE": "1"}
    with running_collector(tmp_path, env=env) as collector:
        install = _upgraded_install(tmp_path, collector, "auto")
        held_back = install.json("collect", hour=1)
        assert NEW not in held_back["metrics"]
        assert RETIRED not in held_back["metrics"]
        assert ("awaiting_approval", NEW) in {(d["reason"], d["key"]) for d in held_back["dropped"]}
        listed = install.json("metrics", hour=1)
        assert listed["consented_version"] == 1
        assert listed["awaiting_approval"] == [NEW]
        assert listed["retired"] == [RETIRED]
        status = install.json("status", hour=1)
        assert status["metrics"]["awaiting_approval"] == [NEW]
        text = install.run("metrics", hour=1).stdout.decode()
        assert "usage.environments" in text
        assert "telemetry-agent metrics approve usage.environments" in text
        explain = install.run("preview", "--explain", hour=1).stdout.decode()
        assert "#   awaiting approval: usage.environments" in explain
        assert "#   retired:           host.disk.free_gib (in version 2)" in explain

        assert install.json("metrics", "approve", NEW, hour=1)["approved"] == [NEW]
        assert install.states()[NEW] == "collected"
        approved = install.json("collect", hour=2)
        assert approved["metrics"][NEW] == 3
        install.run("seal", hour=2)
        assert [r["outcome"] for r in install.json("send", hour=2)["results"]] == ["delivered"]
        held = install.json("remote", hour=2)
        latest = _snapshots(held)[-1]
        assert latest["metrics"][NEW] == 3
        assert RETIRED not in latest["metrics"]
        assert RETIRED in _snapshots(held)[0]["metrics"]  # the v1 batch, sent before the upgrade
        assert sorted(b["catalogue_version"] for b in held["batches"]) == [1, 2]
        # Every report answers over batches of both versions (the retired metric is absent from the newer one).
        names = [r["name"] for r in collector.get("/v1/reports")["reports"]]
        assert len(names) >= 5
        for name in names:
            answer = collector.get(
                f"/v1/reports/{name}?interval=day&from={T0.date()}&to={(T0 + dt.timedelta(days=1)).date()}"
            )
            assert answer["rows"] is not None, name
        installs = collector.get(f"/v1/reports/active-installs?interval=day&from={T0.date()}&to={T0.date()}")
        assert [row["installs"] for row in installs["rows"]] == [1]


def test_review_mode_after_upgrade_needs_the_metric_and_the_batch_approved(tmp_path: Path) -> None:
    """In review mode an approved new metric still goes only in a batch the admin approves."""
    with running_collector(tmp_path, env={"TELEMETRY_COLLECTOR_CATALOGUE": str(V2)}) as collector:
        install = _upgraded_install(tmp_path, collector, "review")
        install.run("collect", hour=1)
        assert install.states()[NEW] == "awaiting_approval"
        assert install.json("metrics", "approve", "--all", hour=1)["approved"] == [NEW]
        install.run("collect", hour=2)
        install.run("seal", hour=2)
        assert install.json("send", hour=2)["skipped"] == "no approved batch waiting"
        [waiting] = install.json("preview", hour=2)["batches"]
        assert waiting["status"] == "waiting"
        assert f'"{NEW}":3' in waiting["text"]
        install.run("approve", "--all", hour=2)
        assert [r["outcome"] for r in install.json("send", hour=2)["results"]] == ["delivered"]
        assert _snapshots(install.json("remote", hour=2))[-1]["metrics"][NEW] == 3


def _import(db: Path, files: list[Path], *, catalogue: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "collector", "import", "--db", str(db), *map(str, files)]
    if catalogue is not None:
        argv += ["--catalogue", str(catalogue)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_air_gapped_export_with_an_imported_policy_is_accepted(tmp_path: Path) -> None:
    """A v2 agent with no endpoint goes by the v1 collector's policy carried over as a file: its export leaves the
    new metric out and the v1 collector's `import` takes it; without the policy the same export is refused."""
    with running_collector(tmp_path) as collector:
        policy = tmp_path / "policy.json"
        policy.write_bytes(orjson.dumps(collector.get("/v1/policy")))
    exports = {}
    for name, with_policy in (("with-policy", True), ("without", False)):
        install = Install(tmp_path / name, None, catalogue=V2)
        if with_policy:
            imported = install.json("policy", "import", str(policy))
            assert (imported["catalogue_version"], imported["source"]) == (1, "import")
            assert install.states()[NEW] == "not_accepted"
        install.run("consent", "auto")
        install.run("collect")
        install.run("seal")
        files = [Path(f) for f in install.json("export", str(tmp_path / f"usb-{name}"))["files"]]
        assert len(files) == 1
        exports[name] = files
    assert NEW not in exports["with-policy"][0].read_text()
    assert NEW in exports["without"][0].read_text()
    db = tmp_path / "air-gapped.duckdb"
    accepted = _import(db, exports["with-policy"])
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    refused = _import(db, exports["without"])
    assert refused.returncode == 2
    assert "unknown_metric" in refused.stdout
    assert "catalogue version 1" in refused.stdout
    # The same file goes into a collector upgraded to v2, with the new metric stored.
    assert _import(tmp_path / "v2.duckdb", exports["without"], catalogue=V2).returncode == 0
