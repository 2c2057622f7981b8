"""Data-subject requests: ``GET`` and ``DELETE /v1/installs/{install_id}``, proven by the install's secret.

The caller presents ``Authorization: Bearer <install secret>``; the collector recomputes the install id
from it (:func:`schema.same_install`) and stores no secret. A missing, malformed or wrong secret gets the
same 401 whether or not the install exists, and nothing is read before the proof succeeds. The SQL is
in :mod:`collector.storage.subjects`; the storage backend makes it cover every copy it keeps.
"""

from __future__ import annotations

from aiohttp import web

from collector.errors import UnauthorizedError
from collector.web.keys import LIMITS, STORE
from collector.web.limits import peer_of
from collector.web.responses import json_response
from collector.web.tokens import bearer
from schema import same_install

__all__ = ["delete_install", "get_install"]


def _proven_install_id(request: web.Request) -> str:
    # Each proof costs a key derivation, and an answer tells whether a guess was right: both limited
    # per client address, before anything else is done.
    limits, peer = request.app[LIMITS], peer_of(request)
    limits.install_requests.spend(peer, "requests for /v1/installs from this address")
    limits.auth_failures.check(peer, "failed authentications from this address")
    install_id = request.match_info["install_id"].lower()
    secret = bearer(request)
    if secret is None or not same_install(install_id, secret):
        limits.auth_failures.take(peer)
        raise UnauthorizedError("the install's secret is required (Authorization: Bearer <secret>)")
    return install_id


async def get_install(request: web.Request) -> web.Response:
    """``GET /v1/installs/{install_id}``: everything held about the install (every acknowledged batch included)."""
    install_id = _proven_install_id(request)
    store = request.app[STORE]
    store.check_readable()
    return json_response(await store.install_data(install_id))


async def delete_install(request: web.Request) -> web.Response:
    """``DELETE /v1/installs/{install_id}``: erase the install from every table, rollups included."""
    install_id = _proven_install_id(request)
    store = request.app[STORE]
    store.check_readable()
    batches, snapshots = await store.erase_install(install_id)
    return json_response({"install_id": install_id, "deleted": {"batches": batches, "snapshots": snapshots}})
