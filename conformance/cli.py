"""The ``sapo-conformance`` command line."""

from __future__ import annotations

import argparse
import sys

from sapo_ref._version import ORACLE_VERSION, __version__

#: Exit codes (README, "Exit codes").
EXIT_OK = 0
EXIT_NONCONFORMANT = 1
EXIT_USAGE = 2


def _cmd_selfcheck(args) -> int:
    from sapo_ref._selfcheck import main

    return main()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sapo-conformance",
        description="Reference oracle and conformance harness for the SAPO policy loss.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__} (oracle {ORACLE_VERSION})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("selfcheck", help="check the oracle against closed forms, limits and invariants")
    p.set_defaults(func=_cmd_selfcheck)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
