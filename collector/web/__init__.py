"""The HTTP service, in the order a request meets it.

- :mod:`~collector.web.server`: connections before the app sees them (timeouts, the connection cap, the
  answer to an unparsable request); :mod:`~collector.web.limits`: what one client may ask.
- :mod:`~collector.web.app`: the application, its error middleware, health, readiness, ``/metrics``.
- :mod:`~collector.web.ingest`: ``POST /v1/batches``.
- :mod:`~collector.web.routes`: reports and the dashboard; :mod:`~collector.web.tokens`: who may read them,
  and the token routes; :mod:`~collector.web.installs`: data-subject requests;
  :mod:`~collector.web.backup`: ``POST /v1/admin/backup``.
- :mod:`~collector.web.jobs` and :mod:`~collector.web.retention`: background work while serving;
  :mod:`~collector.web.offload`: reports' Python work off the event loop.
- :mod:`~collector.web.openapi` and :mod:`~collector.web.openapi_paths`: the document at ``/v1/openapi.json``.
"""
