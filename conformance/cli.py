"""The ``sapo-conformance`` command line: parses arguments, calls the library
(``conformance.pipeline``, ``bench``, ``golden``, ``compare``) and maps the
outcome to an exit code.

Exit codes (README, "Exit codes"): 0 success (conformant), 1 non-conformant
or a regression, 2 usage or input error, 3 harness error, 4 the candidate
cannot run here.  User errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from sapo_ref import LOSS_AGG_MODES
from sapo_ref._version import ORACLE_VERSION, __version__

from .profiles import BENCH_PROFILES, DEFAULT_GROUP_TIMEOUT_S, NOISY_SPREAD, SUITE_PROFILES

EXIT_OK, EXIT_NONCONFORMANT, EXIT_USAGE, EXIT_HARNESS, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, as for any tool whose reader went away


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit 2."""


def _err(message: str) -> None:  # one line: what is wrong, and what to do
    print(f"sapo-conformance: {message}", file=sys.stderr)


def _cmd_selfcheck(args) -> int:
    from sapo_ref._selfcheck import main as selfcheck

    return selfcheck()


def _cmd_list(args) -> int:
    from .pipeline import list_candidates
    from .render import candidate_table

    rows = list_candidates()
    print(json.dumps(rows, indent=2) if args.json else candidate_table(rows))
    return EXIT_OK


def _cmd_run(args) -> int:
    from . import pipeline, render
    from .golden import ENV_VAR as GOLDEN_DIR_VAR
    from .isolate import CandidateCrashed
    from .loading import ENV_VAR

    if args.golden_dir:
        os.environ[GOLDEN_DIR_VAR] = args.golden_dir
    if args.golden_only:
        if args.check:
            raise UsageError("--golden-only and --check are exclusive")
        args.check = ["golden.*"]
    report_dir = pipeline.prepare_report_dir(args.report_dir)
    options = dict(profile=args.profile, device=args.device, seed=args.seed, dtypes=args.dtype, modes=args.mode,
                   checks=args.check, throughput=args.throughput, timeout_s=args.timeout,
                   memory_limit=args.memory_limit, command=pipeline.command_line(args.argv),
                   accept=pipeline.accept_sources(args.accept, project=not args.all, quiet=args.quiet),
                   strict_accept=args.strict_accept, fail_on=args.fail_on)
    if args.all:
        return _run_all(args, report_dir, options)
    spec = args.candidate or os.environ.get(ENV_VAR)
    if not spec:
        raise UsageError(f"no candidate given: pass a name or module:attr, set {ENV_VAR}, or use --all")
    path = report_dir / "report.json"
    try:
        report = pipeline.certify(spec, isolate=args.isolate, progress=not args.quiet, report_path=str(path),
                                  **options)
    except (pipeline.CandidateUnavailable, CandidateCrashed) as exc:  # no report: say why
        _err(str(exc))
        return EXIT_UNAVAILABLE if isinstance(exc, pipeline.CandidateUnavailable) else EXIT_NONCONFORMANT
    pipeline.clear_previous_run(report_dir, quiet=args.quiet)
    report.write(report_dir, junit=args.junit)
    print(render.terminal_summary(report.document, verbose=args.verbose))
    print(f"report: {report_dir / 'report.html'} (also report.json, report.md)")
    if report.harness_error:
        _err(report.harness_error)
    return EXIT_HARNESS if report.harness_error else EXIT_NONCONFORMANT if report.fails else EXIT_OK


def _run_all(args, report_dir: Path, options: dict) -> int:
    from . import compare, pipeline

    if args.candidate:
        raise UsageError("give either a candidate or --all, not both")
    if args.jobs > 1 and not args.isolate:
        raise UsageError("--jobs needs --isolate: candidates run in parallel in their own processes")
    entries = pipeline.certify_all(jobs=args.jobs, isolate=args.isolate, on_done=lambda e: print(e, file=sys.stderr),
                                   progress=not (args.quiet or args.jobs > 1), **options)
    pipeline.clear_previous_run(report_dir, quiet=args.quiet)
    print(compare.render_matrix_markdown(pipeline.write_all(entries, report_dir)))
    faulty = any(e.report is not None and e.report.harness_error for e in entries)  # on_done printed each
    bad = any(e.status == "error" or (e.report is not None and e.report.fails) for e in entries)
    return EXIT_HARNESS if faulty else EXIT_NONCONFORMANT if bad else EXIT_OK


def _cmd_bench(args) -> int:
    from . import bench, render
    from .loading import ENV_VAR, registered_names
    from .pipeline import benchmark, command_line
    from .report import atomic_write, bench_document, dumps

    try:
        shapes = tuple(bench.parse_shape(x) for x in args.shape) if args.shape else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.all and args.candidates:
        raise UsageError("give candidates or --all, not both")
    json_path = Path(args.json) if args.json else None
    if json_path is not None and not json_path.parent.is_dir():  # before minutes of timing, not after
        raise UsageError(f"cannot write {json_path}: directory {json_path.parent} does not exist")
    profile = BENCH_PROFILES[args.profile]
    profile = replace(profile, rounds=args.rounds) if args.rounds else profile
    shapes = shapes or profile.shapes
    if args.oracle:
        for B_, T_ in shapes:
            print(render.render_oracle_speed(bench.oracle_speed(B_, T_, rounds=args.rounds or 40, seed=args.seed)))
        if not (args.candidates or args.all):
            return EXIT_OK
    specs = registered_names() if args.all else list(args.candidates)
    if not specs and os.environ.get(ENV_VAR):
        specs = [os.environ[ENV_VAR]]
    if not specs:
        raise UsageError(f"no candidate given: pass names or module:attr, set {ENV_VAR}, or use --all")
    results, code = [], EXIT_OK
    for item in benchmark(specs, shapes=shapes, dtypes=args.dtype, device=args.device, profile=profile,
                          seed=args.seed, baseline=not args.no_baseline):
        if item.unavailable:
            print(item.problem)
            code = max(code, EXIT_OK if args.all else EXIT_UNAVAILABLE)
        elif item.problem:
            if not args.all:
                raise UsageError(item.problem)
            print(f"{item.spec}: {item.problem}", file=sys.stderr)
            code = max(code, EXIT_NONCONFORMANT)
        else:
            print(render.render_throughput_text(item.candidate.name, item.section) + "\n")
            code = max(code, EXIT_NONCONFORMANT if item.invalid else EXIT_OK)
            results.append(item.as_dict())
    if json_path is not None:
        atomic_write(json_path, dumps(bench_document(results, device=args.device, command=command_line(args.argv))))
        print(f"wrote {json_path}")
    return code


def _cmd_defects(args) -> int:
    from .render import defects_table

    print(defects_table())
    return EXIT_OK


def _cmd_reproduce(args) -> int:
    from .report import ReportError
    from .reproduce import NoCounterexample, reproduce

    try:
        outcome = reproduce(args.report, args.check_id)
    except NoCounterexample as exc:
        print(str(exc))
        return EXIT_USAGE
    except (ReportError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(outcome.text)
    return EXIT_OK if outcome.passed else EXIT_NONCONFORMANT


def _cmd_golden(args) -> int:
    from . import golden

    try:
        if args.golden_command == "regen":
            text, ok = golden.regenerate_text(Path(args.out) if args.out else golden.default_dir(), seed=args.seed)
        else:
            text, ok = golden.verify_text(Path(args.dir) if args.dir else golden.default_dir())
    except golden.GoldenError as exc:
        raise UsageError(str(exc)) from None
    print(text)
    return EXIT_OK if ok else EXIT_NONCONFORMANT


def _cmd_diff(args) -> int:
    from . import compare
    from .report import ReportError, load_report

    try:
        old, new = load_report(args.old), load_report(args.new)
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    if args.include_noisy and args.fail_slower is None:
        raise UsageError("--include-noisy only applies with --fail-slower")
    d = compare.diff_reports(old, new, slower_threshold=args.fail_slower, include_noisy=args.include_noisy)
    print(compare.render_diff(d))
    return EXIT_NONCONFORMANT if d["regression"] else EXIT_OK


def _number(kind, low, what):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (value >= low) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be {'at least 1' if kind is int else 'positive'}")
        return value

    return parse


def _memory_limit(text: str):
    from .isolate import parse_size

    try:
        return "auto" if text in ("default", "auto") else parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``--help`` shows the usage)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sapo-conformance",
                     description="Reference oracle and conformance harness for the SAPO policy loss.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__} (oracle {ORACLE_VERSION})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("selfcheck", help="check the oracle against closed forms, limits and invariants"
                   ).set_defaults(func=_cmd_selfcheck)

    p = sub.add_parser("list", help="list registered candidates and whether they can run here")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("run", help="certify a candidate and write a conformance report")
    p.add_argument("candidate", nargs="?", help="registered name or module:attr (default: $SAPO_CANDIDATE)")
    p.add_argument("--all", action="store_true", help="certify every registered candidate; write a matrix")
    p.add_argument("--jobs", type=_number(int, 1, "an integer"), default=1, metavar="N",
                   help="with --all: certify N candidates at a time, each in its own process")
    p.add_argument("--profile", choices=sorted(SUITE_PROFILES), default="default",
                   help="quick (seconds), default (CI), thorough (hunts worst cases)")
    p.add_argument("--report-dir", default="sapo-report", help="where to write report.json/.md/.html")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", action="append", help="restrict to this dtype (repeatable)")
    p.add_argument("--mode", action="append", choices=LOSS_AGG_MODES, help="restrict to this aggregation mode")
    p.add_argument("--check", action="append", help="only checks matching this glob (repeatable), e.g. 'edge.*'; "
                   "'-GLOB' leaves those out, e.g. --check=-edge.long-row")
    p.add_argument("--seed", type=int, default=0, help="seed of the random checks (default 0: reproducible)")
    p.add_argument("--junit", help="also write JUnit XML to this file")
    p.add_argument("--golden-only", action="store_true", help="only replay the golden fixtures")
    p.add_argument("--golden-dir", help="golden fixture directory (default: golden/ or $SAPO_GOLDEN_DIR)")
    p.add_argument("--throughput", choices=("none",) + tuple(BENCH_PROFILES),
                   help="throughput section (default: quick; default for thorough; none for quick)")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                   help="run the candidate in a worker process: a crash or hang is a check error (default: on)")
    p.add_argument("--timeout", type=_number(float, 1e-300, "a number of seconds"), default=DEFAULT_GROUP_TIMEOUT_S,
                   metavar="SECONDS", help=f"deadline of each check group when isolated ({DEFAULT_GROUP_TIMEOUT_S:g})")
    p.add_argument("--memory-limit", type=_memory_limit, default="auto", metavar="SIZE",
                   help="address-space limit of the isolated candidate, e.g. 4G or none "
                        "(default: 8G or half the memory; none on CUDA)")
    p.add_argument("--fail-on", metavar="CATEGORIES", help="categories whose findings exit 1, e.g. semantics,contract")
    p.add_argument("--accept", action="append", metavar="FILE", help="declared deviations (TOML; repeatable)")
    p.add_argument("--strict-accept", action="store_true", help="an accept entry that no longer fails is an error")
    p.add_argument("--verbose", action="store_true", help="list every failing check, not only the findings")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("bench", help="throughput against the copy roofline and torch-eager")
    p.add_argument("candidates", nargs="*", metavar="CANDIDATE", help="registered names or module:attr")
    p.add_argument("--all", action="store_true", help="every registered candidate")
    p.add_argument("--profile", choices=sorted(BENCH_PROFILES), default="default",
                   help="shapes and rounds (default: default, 8x1024 to 64x16384)")
    p.add_argument("--shape", action="append", metavar="BxT", help="benchmark this shape instead (repeatable)")
    p.add_argument("--dtype", action="append", help="only this dtype (repeatable; default: all claimed but float64)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--rounds", type=_number(int, 1, "an integer"), help="timed calls per contender and shape")
    p.add_argument("--no-baseline", action="store_true", help="do not time torch-eager alongside")
    p.add_argument("--oracle", action="store_true",
                   help="time the float64 oracle, default and reproducible, against one np.exp pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=_cmd_bench)

    sub.add_parser("defects", help="the known defects findings are diagnosed against").set_defaults(func=_cmd_defects)
    p = sub.add_parser("reproduce", help="re-run one failing check of a report on its counterexample")
    p.add_argument("report", help="a report.json")
    p.add_argument("check_id", help="the check's id, e.g. 'random:grad[float32,token-mean]'")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("golden", help="regenerate or verify the golden fixtures")
    gsub = p.add_subparsers(dest="golden_command", metavar="ACTION", required=True)
    g = gsub.add_parser("regen", help="regenerate the fixtures (deterministic, atomic)")
    g.add_argument("--out", help="directory (default: golden/ of this checkout or $SAPO_GOLDEN_DIR)")
    g.add_argument("--seed", type=int, default=20251120)
    g.set_defaults(func=_cmd_golden)
    g = gsub.add_parser("verify", help="recompute every case with the current oracle (2 ulp)")
    g.add_argument("--dir", help="directory (default: golden/ of this checkout or $SAPO_GOLDEN_DIR)")
    g.set_defaults(func=_cmd_golden)

    p = sub.add_parser("diff", help="what changed between two reports; exit 1 on a regression")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--fail-slower", type=float, metavar="PCT",
                   help="also a regression: a throughput median more than PCT %% slower (rows noisy in either "
                        "report are not judged)")
    p.add_argument("--include-noisy", action="store_true",
                   help="with --fail-slower: judge noisy rows too (IQR over "
                        f"{100 * NOISY_SPREAD:.0f}%% of a median; README, \"Throughput\")")
    p.set_defaults(func=_cmd_diff)
    return parser


def main(argv=None) -> int:
    from .builtins import select_triton_backend  # numpy-only imports: nothing imports triton first
    from .loading import search_working_directory
    from .pipeline import RequestError

    select_triton_backend()
    search_working_directory()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help/--version exit 0
        return int(exc.code or 0)
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except (UsageError, RequestError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    except BrokenPipeError:  # `... | head`: the reader is gone, so is our output
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE_CLOSED
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_HARNESS
    except Exception as exc:  # a bug in the harness: say so, with the cause
        _err(f"harness error: {type(exc).__name__}: {exc}")
        return EXIT_HARNESS


if __name__ == "__main__":
    sys.exit(main())
