"""The versioned catalogue: each batch is checked against what its catalogue version allowed.

The fixture tests/data/catalogues/v2.toml is version 2 of the packaged catalogue: it adds
`usage.environments` and retires `host.disk.free_gib`.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import jsonschema
import orjson
import pytest

import schema
from schema import CATALOGUE, SchemaError, check_successor, load_catalogue, parse_batch_obj, read_catalogue
from schema.docs import render_metrics_md, render_privacy_md
from tests.conftest import DATA, ROOT

V2_PATH = DATA / "catalogues" / "v2.toml"
V2 = read_catalogue(V2_PATH)


def _batch(catalogue_version: int, **metrics: int | str) -> dict[str, Any]:
    obj: dict[str, Any] = orjson.loads((DATA / "v2" / "valid" / "minimal.json").read_bytes())
    obj["catalogue_version"] = catalogue_version
    obj["snapshots"][0]["metrics"] = {"os.family": "linux", **{k.replace("__", "."): v for k, v in metrics.items()}}
    return obj


def test_catalogue_metrics_at_each_version() -> None:
    """Version 1 allows the retired metric and not the added one; version 2 the other way round; newer = 2."""
    assert "host.disk.free_gib" in V2.metrics_at(1)
    assert "usage.environments" not in V2.metrics_at(1)
    assert "host.disk.free_gib" not in V2.metrics_at(2)
    assert "usage.environments" in V2.metrics_at(2)
    assert V2.metrics_at(9) == V2.metrics_at(2)
    assert [e.key for e in V2.added_in(2)] == ["usage.environments"]
    assert [e.key for e in V2.retired_in(2)] == ["host.disk.free_gib"]
    assert set(CATALOGUE.metrics_at(1)) == set(CATALOGUE.metrics)


def test_batch_of_older_version_may_hold_a_metric_retired_later() -> None:
    """A version-1 batch with host.disk.free_gib is accepted by a version-2 catalogue."""
    batch = parse_batch_obj(_batch(1, host__disk__free_gib=120), catalogue=V2)
    assert batch.snapshots[0].metrics["host.disk.free_gib"] == 120


def test_batch_holding_a_retired_metric_is_refused() -> None:
    """A version-2 batch may not hold what version 2 retired."""
    with pytest.raises(SchemaError) as info:
        parse_batch_obj(_batch(2, host__disk__free_gib=120), catalogue=V2)
    assert (info.value.code, info.value.path) == ("retired_metric", "snapshots[0].metrics.host.disk.free_gib")
    assert "retired in catalogue version 2" in info.value.message


def test_batch_holding_a_metric_added_after_its_version_is_refused() -> None:
    """A version-1 batch may not hold a metric that version 2 added."""
    with pytest.raises(SchemaError) as info:
        parse_batch_obj(_batch(1, usage__environments=3), catalogue=V2)
    assert (info.value.code, info.value.path) == ("metric_not_in_version", "snapshots[0].metrics.usage.environments")


def test_newer_batch_is_accepted_when_every_key_is_known() -> None:
    """A version-2 batch holding only version-1 metrics is accepted by a version-1 catalogue."""
    batch = parse_batch_obj(_batch(2, usage__projects=4), catalogue=CATALOGUE)
    assert batch.catalogue_version == 2


def test_newer_batch_with_an_unknown_key_names_this_catalogue_version() -> None:
    """A version-1 catalogue refuses a version-2 batch holding a version-2 metric, naming version 1."""
    with pytest.raises(SchemaError) as info:
        parse_batch_obj(_batch(2, usage__environments=3), catalogue=CATALOGUE)
    assert (info.value.code, info.value.path) == ("unknown_metric", "snapshots[0].metrics.usage.environments")
    assert "catalogue version 1" in info.value.message
    assert "version 2" in info.value.message


@pytest.mark.parametrize(
    ("version", "metrics", "valid"),
    [
        (1, {"host.disk.free_gib": 120}, True),
        (2, {"host.disk.free_gib": 120}, False),
        (1, {"usage.environments": 3}, False),
        (2, {"usage.environments": 3}, True),
        (5, {"usage.environments": 3}, True),
        (5, {"host.disk.free_gib": 120}, False),
    ],
)
def test_json_schema_v2_agrees_with_the_parser_on_versions(version: int, metrics: dict[str, int], valid: bool) -> None:
    """The format-2 JSON Schema of a versioned catalogue states the since/removed_in rules as the parser does."""
    obj = _batch(version)
    obj["snapshots"][0]["metrics"].update(metrics)
    validator = jsonschema.Draft202012Validator(schema.batch_json_schema(V2, 2))
    assert validator.is_valid(obj) is valid
    try:
        parse_batch_obj(copy.deepcopy(obj), catalogue=V2)
    except SchemaError:
        assert not valid
    else:
        assert valid


def test_fixture_version_2_validly_follows_the_packaged_catalogue() -> None:
    """The fixture only adds and retires; every version-1 entry is as version 1 had it."""
    check_successor(CATALOGUE, V2)
    check_successor(CATALOGUE, CATALOGUE)


TEXT = V2_PATH.read_text("utf-8")


@pytest.mark.parametrize(
    ("edit", "code", "path"),
    [
        (('unit = "percent"', 'unit = "ratio"'), "changed", "metric[host.cpu.usage_pct]"),
        (("since = 2", "since = 1"), "out_of_bounds", "metric[usage.environments].since"),
        (("(such as staging and production)", ""), None, None),
    ],
)
def test_successor_check_refuses_edits_of_an_earlier_version(edit: tuple[str, str], code: str | None,
                                                             path: str | None) -> None:  # fmt: skip
    """Editing an old entry, a change without a version bump, or a new metric dated back are refused."""
    new = load_catalogue(TEXT.replace(*edit, 1))
    if code is None:  # a clause added in version 2 may say what it likes
        check_successor(CATALOGUE, new)
        return
    with pytest.raises(SchemaError) as info:
        check_successor(CATALOGUE, new)
    assert (info.value.code, info.value.path) == (code, path)


def test_successor_check_refuses_a_change_without_a_version_bump() -> None:
    """Adding a metric and keeping the version number is refused: installs could not tell the two apart."""
    same = TEXT.replace("catalogue_version = 2", "catalogue_version = 1").replace("since = 2", "since = 1")
    with pytest.raises(SchemaError) as info:
        check_successor(CATALOGUE, load_catalogue(same.replace("removed_in = 2\n", "")))
    assert (info.value.code, info.value.path) == ("not_bumped", "catalogue_version")


def test_successor_check_refuses_a_deleted_metric() -> None:
    """A metric is retired, never deleted."""
    start = TEXT.index('[[metric]]\nkey = "usage.projects"')
    end = TEXT.index("[[metric]]", start + 1)
    with pytest.raises(SchemaError) as info:
        check_successor(CATALOGUE, load_catalogue(TEXT[:start] + TEXT[end:]))
    assert (info.value.code, info.value.path) == ("removed", "metric[usage.projects]")


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (("removed_in = 2", "removed_in = 1"), "metric[6][host.disk.free_gib].removed_in"),
        (("removed_in = 2", "removed_in = 3"), "metric[6][host.disk.free_gib].removed_in"),
        (
            (
                'since = 1\n\n[[header]]\nkey = "product.version"',
                'since = 1\nremoved_in = 2\n\n[[header]]\nkey = "product.version"',
            ),
            "header[0][product.name].removed_in",
        ),
    ],
)
def test_bad_retirement_is_refused(edit: tuple[str, str], path: str) -> None:
    """removed_in must come after since and not after this version; a header field cannot be retired."""
    with pytest.raises(SchemaError) as info:
        load_catalogue(TEXT.replace(*edit, 1))
    assert info.value.path == path


def test_policy_document_round_trips() -> None:
    """The JSON of GET /v1/policy reads back as the same catalogue, retirements included."""
    for catalogue in (CATALOGUE, V2):
        doc = orjson.loads(orjson.dumps(schema.policy_document(catalogue)))
        again = schema.parse_policy(doc)
        assert (again.version, dict(again.metrics), dict(again.header)) == (
            catalogue.version, dict(catalogue.metrics), dict(catalogue.header))  # fmt: skip


def test_policy_document_reader_ignores_unknown_fields_and_names_bad_ones() -> None:
    """A newer collector's extra fields are ignored; a wrong type is refused naming its field."""
    doc = schema.policy_document(V2)
    doc["served_by"] = "a newer collector"
    doc["metrics"][0]["display_name"] = "OS family"
    assert schema.parse_policy(doc).version == 2
    doc["metrics"][3]["max"] = "100"
    with pytest.raises(SchemaError) as info:
        schema.parse_policy(doc)
    assert info.value.path == "metrics[3][host.cpu.usage_pct].max"


def test_generated_metric_dictionary_holds_the_changelog() -> None:
    """docs/metrics.md lists each version's added and retired metrics; privacy.md says how consent binds."""
    text = render_metrics_md(V2)
    changelog = text[text.index("## Changelog") : text.index("## Coarsening rules")]
    assert changelog.index("### Version 2") < changelog.index("### Version 1")
    assert "- Added: `usage.environments`." in changelog
    assert "- Retired: `host.disk.free_gib`." in changelog
    assert "| `host.disk.free_gib` |" in text
    assert "| v1 | v2 |" in text
    privacy = render_privacy_md(V2)
    assert "## Consent follows the catalogue version" in privacy
    assert "version 2 added `usage.environments`" in privacy
    assert "`host.disk.free_gib` (retired in version 2: no longer collected)" in privacy


def test_compare_command_exit_codes() -> None:
    """`python -m schema --compare OLD` exits 0 for a valid successor, 2 with one line naming the problem."""
    ok = subprocess.run([sys.executable, "-m", "schema", "--compare", str(ROOT / "schema" / "catalogue.toml"),
                         "--catalogue", str(V2_PATH)], capture_output=True, text=True, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "schema", "--compare", str(V2_PATH)], capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    assert "older than 2" in bad.stderr
