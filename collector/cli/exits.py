"""The one table from errors to exit codes, for every ``telemetry-collector`` command.

0 success; 1 an operational failure (database in use, port taken, collector unreachable, disk error);
2 bad usage, configuration or input; 130 interrupted. Each error is one line on stderr, never a traceback.
A command raises; :func:`run` prints and picks the code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Final

from collector.errors import BadRequestError, CollectorError, ConfigError, InUseError, NotFoundError

__all__ = ["PROG", "CommandError", "run"]

PROG: Final = "telemetry-collector"


class CommandError(Exception):
    """A one-line error for the user that chooses its own exit code (1 or 2)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def run(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``command(args)``; an error becomes its line on stderr and its exit code.

    A database held by another process gets the command's ``in_use_hint`` (from ``set_defaults``) after it.
    """
    try:
        return int(command(args))
    except CommandError as exc:
        return _fail(str(exc), exc.code)
    except InUseError as exc:
        hint = getattr(args, "in_use_hint", None)
        return _fail(f"{exc.message}{f' ({hint})' if hint else ''}", 1)
    except ConfigError as exc:
        return _fail(exc.message, 2)
    except (BadRequestError, NotFoundError) as exc:
        return _fail(f"{exc.path + ': ' if exc.path else ''}{exc.message}", 2)
    except CollectorError as exc:
        return _fail(exc.message, 1)
    except OSError as exc:
        return _fail(str(exc.strerror or exc), 1)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code
