"""Every golden valid batch is accepted by a collector on the real clock, whatever today's date is.

The golden files are fixed bytes; a date in them that lies ahead of the real clock would be refused
(422 ``in_future``) until that day comes, and a test using the file would pass or fail by the calendar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.collector.conftest import BATCHES, json_headers
from tests.conftest import DATA

VALID = sorted((DATA / "v1" / "valid").glob("*.json"))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
async def test_golden_valid_batch_is_accepted_now(path: Path, collector: TestClient[Any, Any]) -> None:
    """POST the file as it is to a collector whose clock is the real now: 200 and a receipt."""
    resp = await collector.post(BATCHES, data=path.read_bytes(), headers=json_headers())
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["duplicate"] is False
