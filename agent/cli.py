"""The `telemetry-agent` command line (also `python -m agent`).

Exit codes: 0 success, 1 operational failure (collector unreachable, batch rejected, state dir in
use, a full or read-only state dir), 2 bad usage, config or state file, or a state dir this user must not use
(one line naming the field or file, no traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from . import commands
from .config import CONSENT_MODES, DEFAULT_CONFIG, ENV_CONFIG, config_file, load_config
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
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"TOML config file (default: ${ENV_CONFIG}, else {DEFAULT_CONFIG} if it exists)",
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    parser = argparse.ArgumentParser(
        prog="telemetry-agent", parents=[common], description="Open, opt-in product telemetry agent."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: commands.Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text)
        p.set_defaults(func=handler)
        return p

    p = command("preview", commands.preview, "show the exact bytes waiting to be sent; never sends")
    p.add_argument("--explain", action="store_true", help="annotate each metric from the policy catalogue")
    command("collect", commands.collect, "take a snapshot now")
    command("seal", commands.seal, "seal the open batch into the outbox")
    p = command("approve", commands.approve, "approve sealed batches (review mode)")
    p.add_argument("batch_ids", nargs="*", metavar="BATCH_ID")
    p.add_argument("--all", action="store_true", help="approve every batch waiting")
    command("send", commands.send, "deliver what consent allows, now")
    command("run", commands.run, "run the daemon (snapshot, seal and send on schedule)")
    command("status", commands.status, "mode, install id, outbox, last attempt, counters")
    p = command("history", commands.history, "every delivery attempt")
    p.add_argument("--show", metavar="BATCH_ID", help="print the exact bytes of that batch")
    p = command("export", commands.export, "write sealed batches as files for an air-gapped upload")
    p.add_argument("path", type=Path, metavar="PATH")
    p = command("consent", commands.consent, "show or set the consent mode; `reset` returns to the config's mode")
    p.add_argument("mode", nargs="?", choices=(*CONSENT_MODES, "reset"))
    p = command(
        "metrics", commands.metrics, "every catalogue metric and its state; `metrics approve` approves new ones"
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    a = actions.add_parser("approve", parents=[common], help="approve metrics added after the consented version")
    a.set_defaults(func=commands.metrics_approve)
    a.add_argument("keys", nargs="*", metavar="KEY")
    a.add_argument("--all", action="store_true", help="approve every metric awaiting approval")
    p = command(
        "policy",
        commands.policy,
        "the collector policy the agent goes by; `policy import FILE` for air-gapped installs",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    a = actions.add_parser("import", parents=[common], help="go by a policy file (the JSON of GET /v1/policy)")
    a.set_defaults(func=commands.policy_import)
    a.add_argument("file", type=Path, metavar="FILE")
    command("remote", commands.remote, "what the collector holds about this install")
    p = command("forget", commands.forget, "erase this install at the collector, then start over")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (for scripts)")
    return parser


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
        handler: commands.Handler = args.func
        return handler(args, engine)
    except AgentError as exc:
        label, code = next((v for cls, v in _EXIT.items() if isinstance(exc, cls)), ("error", 2))
        message = str(exc)
        if isinstance(exc, ConfigError) and path is None and exc.message.startswith("not set"):
            # The usual cause: the command was typed without the config the service uses.
            message += (
                f" (no config file was read: there is no {DEFAULT_CONFIG}; give --config PATH or set {ENV_CONFIG})"
            )
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
