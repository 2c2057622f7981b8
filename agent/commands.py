"""One handler per `telemetry-agent` command: each takes the parsed arguments and the engine, returns the exit code.

:mod:`agent.cli` builds the parser and binds each (sub)command to its handler with ``set_defaults(func=...)``;
the handlers hold the state dir's lock (:func:`locked`) for the length of the command, except `run` (the daemon
takes it per tick) and `forget` (which asks for confirmation without holding it).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import orjson

from .daemon import Daemon
from .engine import Engine
from .errors import AgentError
from .render import (
    render_collect,
    render_consent_scope,
    render_history,
    render_metrics,
    render_policy,
    render_policy_import,
    render_preview,
    render_send,
    render_status,
)

__all__ = [
    "Handler",
    "approve",
    "collect",
    "consent",
    "export",
    "forget",
    "history",
    "locked",
    "metrics",
    "metrics_approve",
    "policy",
    "policy_import",
    "preview",
    "remote",
    "run",
    "seal",
    "send",
    "status",
]

Handler = Callable[[argparse.Namespace, Engine], int]


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _out_json(obj: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


def _out_bytes(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)


def _json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def locked(handler: Handler) -> Handler:
    """Run ``handler`` holding the state dir's lock."""

    @functools.wraps(handler)
    def wrapper(args: argparse.Namespace, engine: Engine) -> int:
        with engine.state.lock():
            return handler(args, engine)

    return wrapper


def run(_args: argparse.Namespace, engine: Engine) -> int:
    """`run`: the daemon, until SIGTERM or SIGINT."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("agent").info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    Daemon(engine, stop).run()
    return 0


@locked
def preview(args: argparse.Namespace, engine: Engine) -> int:
    """`preview [--explain]`: the exact bytes waiting to be sent."""
    shown = engine.preview()
    if _json(args):
        _out_json(shown.to_json(explain=args.explain))
    else:
        _out_bytes(render_preview(shown, explain=args.explain))
    return 0


@locked
def collect(args: argparse.Namespace, engine: Engine) -> int:
    """`collect`: a snapshot now."""
    result = engine.collect()
    for problem in result.problems:
        print(f"telemetry-agent: warning: {problem}", file=sys.stderr)
    _out_json(result.to_json()) if _json(args) else _out(render_collect(result))
    return 0


@locked
def seal(args: argparse.Namespace, engine: Engine) -> int:
    """`seal`: the open batch into the outbox."""
    batch_id = engine.seal()
    if _json(args):
        _out_json({"batch_id": batch_id})
    else:
        _out(f"Sealed batch {batch_id} into the outbox." if batch_id else "Nothing to seal: no snapshot yet.")
    return 0


@locked
def approve(args: argparse.Namespace, engine: Engine) -> int:
    """`approve BATCH_ID...|--all`: sealed batches for sending in review mode."""
    if not args.all and not args.batch_ids:
        raise AgentError("approve needs BATCH_ID... or --all")
    approved = engine.approve(args.batch_ids, every=args.all)
    if _json(args):
        _out_json({"approved": approved})
    else:
        _out(f"Approved {len(approved)} batch(es)." + "".join(f"\n  {b}" for b in approved))
    return 0


@locked
def send(args: argparse.Namespace, engine: Engine) -> int:
    """`send`: deliver what consent allows, now; exit 1 unless every batch went (or is held back)."""
    report = asyncio.run(engine.send())
    _out_json(report.to_json()) if _json(args) else _out(render_send(report))
    return 0 if report.ok else 1


@locked
def status(args: argparse.Namespace, engine: Engine) -> int:
    """`status`: the settings in force, what waits, what happens next."""
    current = engine.status()
    _out_json(current.to_json()) if _json(args) else _out(render_status(current))
    return 0


@locked
def history(args: argparse.Namespace, engine: Engine) -> int:
    """`history [--show BATCH_ID]`: every delivery attempt, or the exact bytes of one batch."""
    if args.show:
        data = engine.state.stored_bytes(args.show)
        if data is None:
            raise AgentError(f"batch {args.show} is not kept (see `telemetry-agent history`)")
        _out_bytes(data + (b"\n" if sys.stdout.isatty() else b""))
    elif _json(args):
        _out_json(engine.state.history())
    else:
        _out(render_history(engine.state.history_entries()))
    return 0


@locked
def export(args: argparse.Namespace, engine: Engine) -> int:
    """`export PATH`: sealed batches as files for an air-gapped upload."""
    written = engine.export(args.path)
    held = engine.held()
    if _json(args):
        _out_json({"files": [str(p) for p in written], "held": [h.to_json() for h in held]})
        return 0
    if written:
        _out(
            f"Wrote {len(written)} batch file(s) to {args.path}; upload them with "
            f"`telemetry-collector import {args.path}/*.json`." + "".join(f"\n  {p.name}" for p in written)
        )
    else:
        _out("No sealed batch to export.")
    for h in held:
        _out(
            f"Not exported: {h.batch_id}: the collector's policy would refuse it ({h.path or '<document>'}: {h.message})."
        )
    return 0


@locked
def consent(args: argparse.Namespace, engine: Engine) -> int:
    """`consent [off|review|auto|reset]`: show or set the consent mode."""
    if args.mode == "reset":
        engine.reset_consent()
    elif args.mode is not None:
        engine.set_consent(args.mode)
    mode, source = engine.consent()
    if _json(args):
        _out_json({"consent": mode, "source": source, "consented_version": engine.metrics().consented_version})
        return 0
    _out(f"Consent: {mode} (from {source}).")
    if mode != "off":
        _out(render_consent_scope(engine.metrics()))
    if args.mode not in (None, "reset") and mode != args.mode:
        _out(f"Stored {args.mode}, but {source} forces {mode}.")
    elif source == "consent command":
        _out(f"`telemetry-agent consent reset` returns to the config's {engine.config.consent}.")
    return 0


@locked
def metrics(args: argparse.Namespace, engine: Engine) -> int:
    """`metrics`: every catalogue metric and its state."""
    view, mode = engine.metrics(), engine.consent()[0]
    _out_json({"consent": mode, **view.to_json()}) if _json(args) else _out(render_metrics(view, mode))
    return 0


@locked
def metrics_approve(args: argparse.Namespace, engine: Engine) -> int:
    """`metrics approve KEY...|--all`: metrics added after the consented catalogue version."""
    if not args.all and not args.keys:
        raise AgentError("metrics approve needs KEY... or --all")
    approved = engine.approve_metrics(args.keys, every=args.all)
    if _json(args):
        _out_json({"approved": approved, **engine.metrics().to_json()})
    elif approved:
        _out(
            f"Approved {len(approved)} metric(s): {', '.join(approved)}. They are collected from the next "
            "snapshot on (`telemetry-agent metrics` shows every state)."
        )
    elif args.all:
        _out("Nothing to approve: no metric awaits approval.")
    else:
        _out("Nothing to approve: those metrics are already covered by your consent.")
    return 0


@locked
def policy(args: argparse.Namespace, engine: Engine) -> int:
    """`policy`: the collector policy the agent goes by."""
    known = engine.policy()
    if _json(args):
        _out_json({"policy": None if known is None else known.to_json()})
    else:
        _out(render_policy(known, engine.catalogue.version))
    return 0


@locked
def policy_import(args: argparse.Namespace, engine: Engine) -> int:
    """`policy import FILE`: go by a policy file (air-gapped installs)."""
    imported = engine.import_policy(args.file)
    _out_json(imported.to_json()) if _json(args) else _out(render_policy_import(imported, engine.metrics()))
    return 0


@locked
def remote(_args: argparse.Namespace, engine: Engine) -> int:
    """`remote`: what the collector holds about this install (JSON)."""
    _out_json(asyncio.run(engine.remote()))
    return 0


def _confirmed(question: str) -> bool:
    """Ask on stderr, read one line of stdin: only ``y`` or ``yes`` is a yes (end of input is a no)."""
    sys.stderr.write(question)
    sys.stderr.flush()
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    return answer.strip().lower() in ("y", "yes")


def forget(args: argparse.Namespace, engine: Engine) -> int:
    """`forget [--yes]`: erase this install at the collector, then start over with a new id."""
    if not args.yes:
        engine.check_install_requests()
        with engine.state.lock():
            install_id = engine.install_id()
        # Asked without holding the state dir, so a daemon is not kept waiting while the admin reads.
        question = (
            f"Erase everything the collector holds about install {install_id}, clear the local outbox "
            "and history, and start over with a new install id? [y/N] "
        )
        if not _confirmed(question):
            print("telemetry-agent: nothing erased (not confirmed; add --yes to skip the question)", file=sys.stderr)
            return 1
    with engine.state.lock():
        answer = asyncio.run(engine.forget())
    if _json(args):
        _out_json(answer)
        return 0
    deleted = answer.get("deleted") or {}
    _out(
        f"The collector erased install {answer.get('old_install_id')} "
        f"({deleted.get('batches', 0)} batches, {deleted.get('snapshots', 0)} snapshots).\n"
        f"Local outbox and history cleared. New install id: {answer['new_install_id']}"
    )
    return 0
