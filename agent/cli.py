"""The `telemetry-agent` command line (also `python -m agent`).

Exit codes: 0 success, 1 operational failure (collector unreachable, batch rejected, state dir in
use, a full or read-only state dir), 2 bad usage, config or state file, or a state dir this user must not use
(one line naming the field or file, no traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from .config import CONSENT_MODES, DEFAULT_CONFIG, ENV_CONFIG, config_file, load_config
from .daemon import Daemon
from .engine import Engine
from .errors import (
    AgentError,
    ConfigError,
    SendError,
    StateAccessError,
    StateError,
    StateIOError,
    StateLockedError,
)
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

# How each error reaches the admin: label and exit code; the first matching class wins (2 = fix the
# config or state, 1 = an operational failure worth retrying).
_EXIT: dict[type[AgentError], tuple[str, int]] = {
    ConfigError: ("config error", 2),
    StateAccessError: ("state error", 2),
    StateIOError: ("error", 1),
    StateError: ("state error", 2),
    StateLockedError: ("error", 1),
    SendError: ("error", 1),
}

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                        help=f"TOML config file (default: ${ENV_CONFIG}, else {DEFAULT_CONFIG} if it exists)")  # fmt: skip
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    parser = argparse.ArgumentParser(
        prog="telemetry-agent", parents=[common], description="Open, opt-in product telemetry agent."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("preview", parents=[common], help="show the exact bytes waiting to be sent; never sends")
    p.add_argument("--explain", action="store_true", help="annotate each metric from the policy catalogue")
    sub.add_parser("collect", parents=[common], help="take a snapshot now")
    sub.add_parser("seal", parents=[common], help="seal the open batch into the outbox")
    p = sub.add_parser("approve", parents=[common], help="approve sealed batches (review mode)")
    p.add_argument("batch_ids", nargs="*", metavar="BATCH_ID")
    p.add_argument("--all", action="store_true", help="approve every batch waiting")
    sub.add_parser("send", parents=[common], help="deliver what consent allows, now")
    sub.add_parser("run", parents=[common], help="run the daemon (snapshot, seal and send on schedule)")
    sub.add_parser("status", parents=[common], help="mode, install id, outbox, last attempt, counters")
    p = sub.add_parser("history", parents=[common], help="every delivery attempt")
    p.add_argument("--show", metavar="BATCH_ID", help="print the exact bytes of that batch")
    p = sub.add_parser("export", parents=[common], help="write sealed batches as files for an air-gapped upload")
    p.add_argument("path", type=Path, metavar="PATH")
    p = sub.add_parser("consent", parents=[common],
                       help="show or set the consent mode; `reset` returns to the config's mode")  # fmt: skip
    p.add_argument("mode", nargs="?", choices=(*CONSENT_MODES, "reset"))
    p = sub.add_parser("metrics", parents=[common],
                       help="every catalogue metric and its state; `metrics approve` approves new ones")  # fmt: skip
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    a = actions.add_parser("approve", parents=[common], help="approve metrics added after the consented version")
    a.add_argument("keys", nargs="*", metavar="KEY")
    a.add_argument("--all", action="store_true", help="approve every metric awaiting approval")
    p = sub.add_parser("policy", parents=[common],
                       help="the collector policy the agent goes by; `policy import FILE` for air-gapped installs")  # fmt: skip
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    a = actions.add_parser("import", parents=[common], help="go by a policy file (the JSON of GET /v1/policy)")
    a.add_argument("file", type=Path, metavar="FILE")
    sub.add_parser("remote", parents=[common], help="what the collector holds about this install")
    p = sub.add_parser("forget", parents=[common], help="erase this install at the collector, then start over")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (for scripts)")
    return parser


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _out_json(obj: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


def _run_daemon(engine: Engine) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("agent").info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    Daemon(engine, stop).run()
    return 0


def _confirmed(question: str) -> bool:
    """Ask on stderr, read one line of stdin: only ``y`` or ``yes`` is a yes (end of input is a no)."""
    sys.stderr.write(question)
    sys.stderr.flush()
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    return answer.strip().lower() in ("y", "yes")


def _dispatch(args: argparse.Namespace, engine: Engine) -> int:
    as_json = getattr(args, "json", False)
    cmd = args.command
    if cmd == "run":
        return _run_daemon(engine)
    if cmd == "forget" and not args.yes:
        engine.check_install_requests()
        with engine.state.lock():
            install_id = engine.install_id()
        # Asked without holding the state dir, so a daemon is not kept waiting while the admin reads.
        if not _confirmed(f"Erase everything the collector holds about install {install_id}, clear the local outbox "
                          f"and history, and start over with a new install id? [y/N] "):  # fmt: skip
            print("telemetry-agent: nothing erased (not confirmed; add --yes to skip the question)", file=sys.stderr)
            return 1
    with engine.state.lock():
        if cmd == "preview":
            items = engine.preview()
            if as_json:
                _out_json(render_preview(items, explain=args.explain, as_json=True, mode=engine.consent()[0],
                                         view=engine.metrics()))  # fmt: skip
            else:
                sys.stdout.flush()
                sys.stdout.buffer.write(render_preview(items, explain=args.explain, as_json=False,
                                                       mode=engine.consent()[0], view=engine.metrics()))  # fmt: skip
            return 0
        if cmd == "collect":
            result = engine.collect()
            for problem in result.problems:
                print(f"telemetry-agent: warning: {problem}", file=sys.stderr)
            if as_json:
                _out_json({"taken_at": result.taken_at, "stored": result.stored, "metrics": result.metrics,
                           "dropped": [{"reason": r, "key": k} for r, k in result.dropped],
                           "problems": result.problems, "provider": result.provider,
                           "provider_error": result.provider_error, "replaced": result.replaced,
                           "kept": result.kept})  # fmt: skip
            else:
                _out(render_collect(result))
            return 0
        if cmd == "seal":
            batch_id = engine.seal()
            if as_json:
                _out_json({"batch_id": batch_id})
            else:
                _out(f"Sealed batch {batch_id} into the outbox." if batch_id else "Nothing to seal: no snapshot yet.")
            return 0
        if cmd == "approve":
            if not args.all and not args.batch_ids:
                raise AgentError("approve needs BATCH_ID... or --all")
            approved = engine.approve(args.batch_ids, every=args.all)
            if as_json:
                _out_json({"approved": approved})
            else:
                _out(f"Approved {len(approved)} batch(es)." + "".join(f"\n  {b}" for b in approved))
            return 0
        if cmd == "send":
            report = asyncio.run(engine.send())
            if as_json:
                _out_json({"skipped": report.skipped, "results": report.results})
            else:
                _out(render_send(report))
            return 0 if report.ok else 1
        if cmd == "status":
            status = engine.status()
            _out_json(status.to_json()) if as_json else _out(render_status(status))
            return 0
        if cmd == "history":
            if args.show:
                data = engine.state.stored_bytes(args.show)
                if data is None:
                    raise AgentError(f"batch {args.show} is not kept (see `telemetry-agent history`)")
                sys.stdout.flush()
                sys.stdout.buffer.write(data + (b"\n" if sys.stdout.isatty() else b""))
                return 0
            history = engine.state.history()
            _out_json(history) if as_json else _out(render_history(history))
            return 0
        if cmd == "export":
            written = engine.export(args.path)
            held = engine.held()
            if as_json:
                _out_json({"files": [str(p) for p in written], "held": [{"batch_id": b, "code": e.code,
                           "message": e.message, "path": e.path} for b, e in held]})  # fmt: skip
            elif written:
                _out(f"Wrote {len(written)} batch file(s) to {args.path}; upload them with "
                     f"`telemetry-collector import {args.path}/*.json`." + "".join(f"\n  {p.name}" for p in written))  # fmt: skip
            else:
                _out("No sealed batch to export.")
            for batch_id, error in held if not as_json else ():
                _out(f"Not exported: {batch_id}: the collector's policy would refuse it ({error}).")
            return 0
        if cmd == "consent":
            if args.mode == "reset":
                engine.reset_consent()
            elif args.mode is not None:
                engine.set_consent(args.mode)
            mode, source = engine.consent()
            if as_json:
                _out_json({"consent": mode, "source": source, "consented_version": engine.metrics().consented_version})
            else:
                _out(f"Consent: {mode} (from {source}).")
                if mode != "off":
                    _out(render_consent_scope(engine.metrics()))
                if args.mode not in (None, "reset") and mode != args.mode:
                    _out(f"Stored {args.mode}, but {source} forces {mode}.")
                elif source == "consent command":
                    _out(f"`telemetry-agent consent reset` returns to the config's {engine.config.consent}.")
            return 0
        if cmd == "metrics":
            return _metrics(args, engine, as_json=as_json)
        if cmd == "policy":
            if getattr(args, "action", None) == "import":
                policy = engine.import_policy(args.file)
                _out_json(policy.to_json()) if as_json else _out(render_policy_import(policy, engine.metrics()))
            else:
                known = engine.policy()
                _out_json({"policy": None if known is None else known.to_json()}) if as_json else _out(
                    render_policy(known, engine.catalogue.version)
                )
            return 0
        if cmd == "remote":
            _out_json(asyncio.run(engine.remote()))
            return 0
        if cmd == "forget":
            answer = asyncio.run(engine.forget())
            if as_json:
                _out_json(answer)
            else:
                deleted = answer.get("deleted") or {}
                _out(f"The collector erased install {answer.get('old_install_id')} "
                     f"({deleted.get('batches', 0)} batches, {deleted.get('snapshots', 0)} snapshots).\n"
                     f"Local outbox and history cleared. New install id: {answer['new_install_id']}")  # fmt: skip
            return 0
    raise AssertionError(cmd)


def _metrics(args: argparse.Namespace, engine: Engine, *, as_json: bool) -> int:
    if getattr(args, "action", None) == "approve":
        if not args.all and not args.keys:
            raise AgentError("metrics approve needs KEY... or --all")
        approved = engine.approve_metrics(args.keys, every=args.all)
        view = engine.metrics()
        if as_json:
            _out_json({"approved": approved, **view.to_json()})
        elif approved:
            _out(f"Approved {len(approved)} metric(s): {', '.join(approved)}. They are collected from the next "
                 "snapshot on (`telemetry-agent metrics` shows every state).")  # fmt: skip
        else:
            _out("Nothing to approve: " + ("no metric awaits approval." if args.all else "those metrics are already "
                 "covered by your consent."))  # fmt: skip
        return 0
    view = engine.metrics()
    _out_json({"consent": engine.consent()[0], **view.to_json()}) if as_json else _out(
        render_metrics(view, engine.consent()[0])
    )
    return 0


def _run_as(owner: str, args: argparse.Namespace, argv: Sequence[str]) -> str:
    """The command line to run this same command as ``owner`` (sudo resets the environment, so the
    config file given by the environment is passed on as ``--config``)."""
    # The path it was started by, when that was the installed script (sudo's PATH may well lack its directory).
    started = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    program = str(started) if started.is_absolute() and started.stem == "telemetry-agent" else "telemetry-agent"
    words = ["sudo", "-u", owner, program]
    if getattr(args, "config", None) is None and os.environ.get(ENV_CONFIG):
        words += ["--config", os.environ[ENV_CONFIG]]
    return shlex.join([*words, *argv])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `telemetry-agent`; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="telemetry-agent: %(message)s", stream=sys.stderr)
    path: Path | None = None
    try:
        path = config_file(getattr(args, "config", None))
        config = load_config(path)
        engine = Engine(config, config_file=path)
        return _dispatch(args, engine)
    except AgentError as exc:
        label, code = next((v for cls, v in _EXIT.items() if isinstance(exc, cls)), ("error", 2))
        message = str(exc)
        if isinstance(exc, ConfigError) and path is None and exc.message.startswith("not set"):
            # The usual cause: the command was typed without the config the service uses.
            message += (f" (no config file was read: there is no {DEFAULT_CONFIG}; give --config PATH or set "
                        f"{ENV_CONFIG})")  # fmt: skip
        if isinstance(exc, StateAccessError) and exc.owner is not None:
            message = f"{exc.problem}: run the command as that user: `{_run_as(exc.owner, args, argv)}`"
        print(f"telemetry-agent: {label}: {message}", file=sys.stderr)
        return code
    except OSError as exc:
        # A last line of defence: every state file access already names its path, but an OS failure
        # anywhere (a full disk, say) is one line and exit 1, never a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"telemetry-agent: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
