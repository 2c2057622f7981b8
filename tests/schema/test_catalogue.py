"""The catalogue: every entry rests on a policy clause, has a coarsening rule, and holds no free text."""

from __future__ import annotations

from pathlib import Path

import pytest

import schema
from schema import CATALOGUE, SchemaError, load_catalogue
from schema.coarsen import RULES

CATALOGUE_TEXT = (Path(schema.__file__).parent / "catalogue.toml").read_text("utf-8")
ENTRIES = [*CATALOGUE.header.values(), *CATALOGUE.metrics.values()]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.key)
def test_every_entry_maps_to_a_clause_and_a_rule(entry: schema.Entry) -> None:
    """Each entry names a clause of the privacy policy, a known coarsening rule and a category."""
    assert entry.clause in CATALOGUE.clauses
    assert entry.coarsening in RULES
    assert entry.category in {"usage", "host"}
    assert entry.description
    assert entry.purpose
    assert 1 <= entry.since <= CATALOGUE.version


def test_catalogue_covers_the_privacy_policy() -> None:
    """v1 holds exactly what the policy permits: usage counts and server information."""
    assert set(CATALOGUE.metrics) == {
        "os.family", "os.version", "host.cpu.logical_cores", "host.cpu.usage_pct", "host.memory.total_gib",
        "host.disk.total_gib", "host.disk.free_gib", "usage.projects", "usage.deployments",
    }  # fmt: skip
    assert CATALOGUE.metrics["usage.deployments"].kind == "counter"


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (('clause = "usage-statistics"', 'clause = "marketing"'), "metric[7][usage.projects].clause"),
        (('coarsening = "round_sig2"', 'coarsening = "blur"'), "metric[5][host.disk.total_gib].coarsening"),
        (('pattern = "[a-z][a-z0-9-]{0,39}"', 'pattern = ".*"'), "header[0][product.name].pattern"),
        (('category = "host"', 'category = "personal"'), "metric[0][os.family].category"),
    ],
)
def test_bad_catalogue_edit_is_refused(edit: tuple[str, str], path: str) -> None:
    """An entry without a clause, with an unknown rule or with a free-text pattern does not load."""
    with pytest.raises(SchemaError) as info:
        load_catalogue(CATALOGUE_TEXT.replace(*edit, 1))
    assert info.value.path == path


@pytest.mark.parametrize(
    ("rule", "raw", "coarse"),
    [
        ("round", 15.6, 16),
        ("round", 2.5, 3),
        ("round_sig2", 487, 490),
        ("round_sig2", 1234.4, 1200),
        ("round_sig2", 99.4, 99),
        ("major_minor", "Ubuntu 22.04.3 LTS", "Ubuntu 22.04"),
        ("major_minor", "Windows Server 2022", "Windows Server 2022"),
        ("major_minor", "Debian 12", "Debian 12"),
    ],
)
def test_coarsening_rules(rule: str, raw: object, coarse: object) -> None:
    """Each rule turns a raw reading into the coarse value, and the coarse value is a fixed point."""
    assert schema.coarsen(rule, raw) == coarse
    assert schema.is_coarse(rule, coarse)


def test_install_id_is_derived_not_random() -> None:
    """The id is a function of the secret only, looks like a UUID, and proves nothing without it."""
    secret = "ab" * 32
    install_id = schema.install_id_from_secret(secret)
    assert install_id == schema.install_id_from_secret(secret)
    assert len(install_id) == 36
    assert schema.same_install(install_id, secret)
    assert not schema.same_install(install_id, "cd" * 32)
    assert not schema.same_install(install_id, "not hex")
    # Any text from a URL is a plain "no", never an exception (compare_digest refuses non-ASCII str).
    for claimed in ("\u00e4", install_id[:-1] + "\u00e4", "\u0130" + install_id[1:], ""):
        assert not schema.same_install(claimed, secret)
    with pytest.raises(SchemaError):
        schema.install_id_from_secret("AB" * 32)
