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


def _list_rows():
    from .loading import registered_candidates

    rows = []
    for reg in registered_candidates():
        if reg.candidate is None:
            rows.append(dict(name=reg.name, framework="-", version="-", dtypes=[], devices=[], profile="-",
                             runs_here=False, reason=reg.error, target=reg.target))
            continue
        info = reg.candidate.info
        avail = reg.candidate.availability()
        here = reg.candidate.runnable_devices() if avail else ()
        rows.append(dict(name=info.name, framework=info.framework, version=info.framework_version,
                         dtypes=list(info.dtypes), devices=list(info.devices), profile=info.profile,
                         runs_here=bool(avail), here=list(here), reason=avail.reason, target=reg.target))
    return rows


def _cmd_list(args) -> int:
    rows = _list_rows()
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no candidates registered (entry point group sapo_conformance.candidates)")
        return EXIT_OK
    table = [("NAME", "FRAMEWORK", "VERSION", "DTYPES", "DEVICES", "PROFILE", "RUNS HERE")]
    for r in rows:
        runs = f"yes ({', '.join(r['here'])})" if r["runs_here"] else f"no: {r['reason']}"
        table.append((r["name"], r["framework"], r["version"], ",".join(r["dtypes"]) or "-",
                      ",".join(r["devices"]) or "-", r["profile"], runs))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sapo-conformance",
        description="Reference oracle and conformance harness for the SAPO policy loss.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__} (oracle {ORACLE_VERSION})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("selfcheck", help="check the oracle against closed forms, limits and invariants")
    p.set_defaults(func=_cmd_selfcheck)
    p = sub.add_parser("list", help="list registered candidates and whether they can run here")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_list)
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
