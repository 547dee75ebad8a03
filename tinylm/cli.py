"""The `tinylm` command line: `tinylm COMMAND ...`, one command per module
of tinylm/commands/ (see its __init__ for how a command registers).

Exit status: what the command returns (for `eval`: 0 every gate passed, 1 a
gate failed); 2 for bad input or usage (argparse's own errors included);
3 for an unexpected internal error (a bug: the traceback is printed).
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback

import tinylm.commands
from tinylm import __version__
from tinylm.evaluate.gate import UsageError

EXIT_USAGE, EXIT_INTERNAL = 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinylm", description="Fine-tune and evaluate tiny language models on a CPU.")
    parser.add_argument("--version", action="version", version=f"tinylm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(tinylm.commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"tinylm.commands.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, ValueError, OSError, NotImplementedError) as exc:
        # FormatError and UnsupportedError are ValueErrors; OSError covers missing and unreadable files.
        print(f"tinylm {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 -- any other exception is a bug; say so rather than pose as a gate failure
        traceback.print_exc()
        print(f"tinylm {args.command}: internal error (please report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
