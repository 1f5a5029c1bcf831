"""The ``colbert-adapters`` command line.

Commands are grouped (``colbert-adapters <group> <command> ...``); each group registers itself in
:data:`COMMAND_GROUPS` with a function that adds its sub-parser, and each command sets ``handler`` to a
function ``(args) -> exit code``. Optional dependencies are imported inside handlers, so ``--help`` is fast
and works without them. One module per command group: ``_index`` (index, search, info), ``_eval`` (eval),
``_qdrant`` (qdrant setup, info, copy), ``_copy`` (copy to another backend), ``_audit`` (audit),
``_common`` (what they share).

Exit codes: 0 success, 1 runtime error (the message names the problem and the fix), 2 usage error
(bad arguments or values), 130 interrupted. Every error is one line on stderr; ``--debug`` adds the traceback.

Qdrant locations (``LOCATION`` arguments):

* ``http://host:6333`` / ``https://...``: a Qdrant server or cluster (``--api-key`` or ``$QDRANT_API_KEY``);
* ``:memory:`` or ``local:DIR``: qdrant-client local mode;
* anything else: a Qdrant Edge directory.

Examples::

    colbert-adapters qdrant setup ./index --dim 128 --datatype float16 --payload-index source:keyword
    colbert-adapters qdrant setup http://localhost:6333 --collection docs --dim 128 \\
        --shard-number 6 --replication-factor 2 --quantization int8 --on-disk
    colbert-adapters qdrant copy ./index http://localhost:6333 --to-collection docs
    colbert-adapters qdrant info ./index
    colbert-adapters copy ./index ./index-qdrant --to qdrant-url --url http://localhost:6333 --collection docs
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from .._index_dir import MANIFEST
from .._version import __version__
from ..errors import ColBERTError, InvalidInputError
from ._audit import add_audit_command
from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, Subparsers, UsageError, quiet_libraries
from ._compact import add_compact_command
from ._copy import add_copy_command
from ._eval import add_eval_command
from ._index import add_index_commands
from ._qdrant import add_qdrant_group

__all__ = ["COMMANDS", "COMMAND_GROUPS", "MANIFEST", "build_parser", "main"]


def _add_top_level_commands(subparsers: Subparsers) -> None:
    add_index_commands(subparsers)
    add_eval_command(subparsers)
    add_copy_command(subparsers)
    add_audit_command(subparsers)
    add_compact_command(subparsers)


#: ``(name, add_parser)`` of every command group; add yours here (e.g. ``index``, ``search``, ``eval``).
COMMAND_GROUPS: list[tuple[str, Callable[[Subparsers], None]]] = [("qdrant", add_qdrant_group)]

#: ``(name, add_parsers)`` of top-level commands (no group): ``index``, ``search``, ``info``, ``eval``, ``copy``.
COMMANDS: list[tuple[str, Callable[[Subparsers], None]]] = [("index/search/info/eval/copy", _add_top_level_commands)]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered command group."""
    parser = argparse.ArgumentParser(
        prog="colbert-adapters",
        description="Late-interaction (ColBERT / MaxSim) retrieval: manage indexes and backends.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    sub.required = True
    for _name, add in COMMANDS + COMMAND_GROUPS:
        add(sub)
    return parser


def _cli_message(err: BaseException) -> str:
    # Library messages name keyword arguments; on the command line the fix is a flag.
    return str(err).replace("pass recreate=True", "pass --recreate").replace("recreate=True", "--recreate")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it).

    Args:
        argv: arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        0 on success, 1 on a runtime error, 2 on a usage error, 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse already printed
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        with quiet_libraries(bool(getattr(args, "quiet", False))):
            return int(args.handler(args))
    except Exception as err:
        if args.debug:
            traceback.print_exc(file=sys.stderr)
        return _report(parser, err)
    except KeyboardInterrupt:
        sys.stderr.write("colbert-adapters: interrupted\n")
        return EXIT_INTERRUPTED


def _report(parser: argparse.ArgumentParser, err: Exception) -> int:
    """Write one stderr line for ``err``; return the exit code it gets."""
    if isinstance(err, UsageError):
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"colbert-adapters: error: {err}\n")
        return EXIT_USAGE
    if isinstance(err, (ColBERTError, OSError)):
        sys.stderr.write(f"colbert-adapters: error: {_cli_message(err)}\n")
        return EXIT_USAGE if isinstance(err, InvalidInputError) else EXIT_ERROR
    # A bug or an input nothing anticipated: still one line; --debug shows the traceback.
    first = str(err).splitlines()[0] if str(err) else ""
    sys.stderr.write(f"colbert-adapters: error: {type(err).__name__}: {first} (run with --debug for the traceback)\n")
    return EXIT_ERROR
