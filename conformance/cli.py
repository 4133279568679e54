"""The ``sapo-conformance`` command line.

Exit codes (README, "Exit codes"): 0 success (conformant), 1 non-conformant
or a regression, 2 usage or input error, 3 harness error, 4 the candidate
cannot run here.  User errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from sapo_ref import LOSS_AGG_MODES
from sapo_ref._version import ORACLE_VERSION, __version__

EXIT_OK = 0
EXIT_NONCONFORMANT = 1
EXIT_USAGE = 2
EXIT_HARNESS = 3
EXIT_UNAVAILABLE = 4

REPORT_FILES = ("report.json", "report.md", "report.html")
MATRIX_FILES = ("matrix.json", "matrix.md", "matrix.html")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit 2."""


def _err(message: str) -> None:
    print(f"sapo-conformance: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------
# selfcheck, list
# ---------------------------------------------------------------------------


def _cmd_selfcheck(args) -> int:
    from sapo_ref._selfcheck import main

    return main()


def _list_rows():
    from .loading import registered_candidates

    rows = []
    for reg in registered_candidates():
        if reg.candidate is None:
            rows.append(dict(name=reg.name, framework="-", version="-", dtypes=[], devices=[], profile="-",
                             runs_here=False, here=[], reason=reg.error, target=reg.target))
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


# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------


def _prepare_report_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create report directory {path}: {exc.strerror or exc}") from None
    if not path.is_dir():
        raise UsageError(f"report directory {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"report directory {path} is not writable")
    return path


def _is_report_set(path: Path) -> bool:
    """A directory holding only report files (one candidate of a --all run)."""
    try:
        names = {p.name for p in path.iterdir()}
    except OSError:
        return False
    return bool(names) and names <= set(REPORT_FILES) and "report.json" in names


def clear_previous_run(report_dir: Path, quiet: bool = False) -> None:
    """Remove an earlier run's files from ``report_dir`` -- its reports,
    matrix, and per-candidate subdirectories holding nothing but reports --
    so that a new run is never mixed with an old one.  Other files are left
    alone."""
    stale = [report_dir / n for n in REPORT_FILES + MATRIX_FILES if (report_dir / n).is_file()]
    subdirs = [p for p in report_dir.iterdir() if p.is_dir() and _is_report_set(p)]
    if (stale or subdirs) and not quiet:
        print(f"replacing the previous run in {report_dir}", file=sys.stderr)
    # report.json first: without it the set is visibly incomplete
    for f in sorted(stale, key=lambda p: p.name != "report.json"):
        f.unlink()
    for d in subdirs:
        for f in sorted(d.iterdir(), key=lambda p: p.name != "report.json"):
            f.unlink()
        d.rmdir()


def write_reports(report: dict, report_dir: Path, junit: Path | None = None) -> None:
    """All files of one run, each atomically; report.json last, so a complete
    report.json means the set is complete (an earlier run's report.json is
    removed before anything is written)."""
    from . import render
    from .report import atomic_write, dumps

    old = report_dir / "report.json"
    if old.exists():
        old.unlink()
    atomic_write(report_dir / "report.md", render.render_markdown(report))
    atomic_write(report_dir / "report.html", render.render_html(report))
    if junit is not None:
        atomic_write(junit, render.render_junit(report))
    atomic_write(report_dir / "report.json", dumps(report))


def _command_line(argv) -> str:
    return "sapo-conformance " + " ".join(shlex.quote(a) for a in argv)


class _InProcess:
    """The candidate in this process (``--no-isolate``, or a Python object)."""

    def __init__(self, cand):
        self.candidate = cand

    def availability(self, device):
        return self.candidate.availability(device)

    def run_units(self, units, args, progress):
        from .runner import run_units

        return run_units(self.candidate, units, device=args.device, profile=args.profile, seed=args.seed,
                         progress=progress)

    def bench(self, name, dtypes, args):
        from .bench import BENCH_PROFILES, bench

        p = BENCH_PROFILES[name]
        return bench(self.candidate, shapes=p.shapes, dtypes=dtypes, device=args.device, profile=p, seed=args.seed)

    def compilations(self):
        return self.candidate.compilations()

    def close(self):
        pass


class _Isolated:
    """The candidate in a worker process (the default; conformance.isolate)."""

    def __init__(self, session):
        self.session = session
        self.candidate = session.candidate

    def availability(self, device):
        from .candidate import Availability

        return Availability(self.session.available, self.session.reason)

    def run_units(self, units, args, progress):
        return self.session.run_units(units, progress)

    def bench(self, name, dtypes, args):
        return self.session.bench(name, dtypes, args.timeout)

    def compilations(self):
        return self.session.compilations()

    def close(self):
        self.session.close()


def _open_candidate(spec, args):
    from .candidate import CandidateError
    from .loading import load_candidate

    if args.isolate and isinstance(spec, str):
        from .isolate import CandidateCrashed, Session

        session = Session(spec, device=args.device, profile=args.profile, seed=args.seed,
                          memory_limit=args.memory_limit, group_timeout_s=args.timeout)
        try:
            session.start()
        except CandidateCrashed:
            raise
        except CandidateError as exc:
            raise UsageError(str(exc)) from None
        return _Isolated(session)
    try:
        return _InProcess(load_candidate(spec))
    except CandidateError as exc:
        raise UsageError(str(exc)) from None


def _run_one(spec, args, report_dir: Path, command: str, *, quiet: bool) -> tuple[int, dict | None, str]:
    """Certify one candidate; returns (exit code, report or None, reason)."""
    from .candidate import CandidateError
    from .isolate import CandidateCrashed
    from .report import build_report
    from .runner import plan, terminal_progress

    try:
        runner = _open_candidate(spec, args)
    except CandidateCrashed as exc:
        return EXIT_NONCONFORMANT, None, str(exc)
    try:
        cand = runner.candidate
        avail = runner.availability(args.device)
        if not avail:
            return EXIT_UNAVAILABLE, None, f"{cand.name} cannot run on {args.device}: {avail.reason}"
        try:
            units = plan(cand, dtypes=args.dtype, modes=args.mode, checks=args.check)
        except CandidateError as exc:
            raise UsageError(str(exc)) from None
        if not units:
            raise UsageError(f"no check matches {', '.join(args.check or ['*'])} for {cand.name}")
        if not quiet:
            how = "in a separate process" if isinstance(runner, _Isolated) else "in this process"
            print(f"certifying {cand.name} ({len(units)} checks, profile {args.profile}, device {args.device}, "
                  f"{how})", file=sys.stderr)
        start = time.perf_counter()
        records = runner.run_units(units, args, None if quiet else terminal_progress())
        throughput = _throughput_section(runner, args, quiet=quiet)
    finally:
        runner.close()
    compilations = runner.compilations()
    report_path = str(report_dir / "report.json")
    report = build_report(cand, spec if isinstance(spec, str) else cand.name, records, profile=args.profile,
                          seed=args.seed, device=args.device, dtypes=args.dtype or cand.info.dtypes,
                          modes=args.mode or cand.info.loss_agg_modes, checks=args.check,
                          duration_s=time.perf_counter() - start, command=command, report_path=report_path,
                          throughput=throughput, compilations=compilations)
    write_reports(report, report_dir, Path(args.junit) if args.junit else None)
    code = EXIT_OK if report["verdict"] == "conformant" else EXIT_NONCONFORMANT
    return code, report, ""


def _throughput_section(runner, args, *, quiet: bool) -> dict | None:
    """run's throughput section: the suite profile's bench profile, unless
    --throughput says otherwise or only some checks were asked for."""
    from .bench import BENCH_PROFILES
    from .checks import SUITE_PROFILES

    name = args.throughput or SUITE_PROFILES[args.profile].throughput
    if args.throughput is None and (args.check or getattr(args, "jobs", 1) > 1):
        name = None  # a partial run (--check, --golden-only), or one sharing the CPUs, is not a benchmark
    if name in (None, "none"):
        return None
    if not quiet:
        print(f"  throughput ({name}: {len(BENCH_PROFILES[name].shapes)} shapes)", file=sys.stderr)
    claimed = runner.candidate.info.dtypes
    dtypes = [d for d in (args.dtype or claimed) if d != "float64"] or list(args.dtype or ["float64"])
    return runner.bench(name, dtypes, args)


def _cmd_run(args) -> int:
    from . import render
    from .isolate import default_memory_limit
    from .loading import ENV_VAR

    if args.memory_limit == "default":
        args.memory_limit = None if args.device == "cuda" else default_memory_limit()
    command = _command_line(args.argv)
    if args.golden_dir:
        os.environ["SAPO_GOLDEN_DIR"] = args.golden_dir
    if args.golden_only:
        if args.check:
            raise UsageError("--golden-only and --check are exclusive")
        args.check = ["golden.*"]
    report_dir = _prepare_report_dir(Path(args.report_dir))
    clear_previous_run(report_dir, quiet=args.quiet)
    if args.all:
        return _run_all(args, report_dir, command)
    spec = args.candidate or os.environ.get(ENV_VAR)
    if not spec:
        raise UsageError(f"no candidate given: pass a name or module:attr, set {ENV_VAR}, or use --all")
    code, report, reason = _run_one(spec, args, report_dir, command, quiet=args.quiet)
    if report is None:
        _err(reason)
        return code
    print(render.terminal_summary(report))
    print(f"report: {report_dir / 'report.html'} (also report.json, report.md)")
    return code


def _run_all(args, report_dir: Path, command: str) -> int:
    """Every registered candidate, ``--jobs`` at a time.  Each unit's seed
    depends only on its own id, and the matrix lists candidates in
    registration order, so a parallel run gives the serial run's matrix."""
    from concurrent.futures import ThreadPoolExecutor

    from . import render
    from .loading import registered_candidates
    from .report import atomic_write, dumps

    if args.candidate:
        raise UsageError("give either a candidate or --all, not both")
    if args.jobs > 1 and not args.isolate:
        raise UsageError("--jobs needs --isolate: candidates run in parallel in their own processes")
    regs = registered_candidates()
    quiet = args.quiet or args.jobs > 1  # interleaved progress from several candidates would be noise

    def certify(reg):
        if reg.candidate is None:
            return {"name": reg.name, "status": "error", "reason": reg.error}, EXIT_NONCONFORMANT
        code, report, reason = _run_one(reg.name, args, _prepare_report_dir(report_dir / reg.name), command,
                                        quiet=quiet)
        if report is None:
            print(f"{reg.name}: skipped ({reason})", file=sys.stderr)
            return {"name": reg.name, "status": "unavailable", "reason": reason}, EXIT_OK
        print(f"{reg.name}: {report['verdict']}", file=sys.stderr)
        return {"name": reg.name, "status": "ran", "report": report}, code

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(certify, regs))  # in registration order, whatever finishes first
    entries = [e for e, _ in results]
    worst = max([code for _, code in results], default=EXIT_OK)
    m = render.matrix(entries)
    atomic_write(report_dir / "matrix.md", render.render_matrix_markdown(m))
    atomic_write(report_dir / "matrix.html", render.render_matrix_html(m))
    atomic_write(report_dir / "matrix.json", dumps(m))
    print(render.render_matrix_markdown(m))
    return worst


# ---------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------


def _cmd_bench(args) -> int:
    from . import bench as B
    from . import render
    from .candidate import CandidateError
    from .loading import ENV_VAR, load_candidate, registered_candidates
    from .report import atomic_write, bench_document, dumps

    profile = B.BENCH_PROFILES[args.profile]
    try:
        shapes = tuple(B.parse_shape(x) for x in args.shape) if args.shape else profile.shapes
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.rounds is not None:
        if args.rounds < 1:
            raise UsageError(f"--rounds must be at least 1, got {args.rounds}")
        profile = replace(profile, rounds=args.rounds)
    if args.all and args.candidates:
        raise UsageError("give candidates or --all, not both")
    json_path = Path(args.json) if args.json else None
    if json_path is not None and not json_path.parent.is_dir():  # before minutes of timing, not after
        raise UsageError(f"cannot write {json_path}: directory {json_path.parent} does not exist")
    if args.oracle:
        for B_, T_ in shapes:
            print(render.render_oracle_speed(B.oracle_speed(B_, T_, rounds=args.rounds or 40, seed=args.seed)))
        if not (args.candidates or args.all):
            return EXIT_OK
    specs = [r.name for r in registered_candidates()] if args.all else list(args.candidates)
    if not specs and os.environ.get(ENV_VAR):
        specs = [os.environ[ENV_VAR]]
    if not specs:
        raise UsageError(f"no candidate given: pass names or module:attr, set {ENV_VAR}, or use --all")
    results, code = [], EXIT_OK
    for spec in specs:
        try:
            cand = load_candidate(spec)
        except CandidateError as exc:
            if not args.all:
                raise UsageError(str(exc)) from None
            print(f"{spec}: {exc}", file=sys.stderr)
            code = max(code, EXIT_NONCONFORMANT)
            continue
        avail = cand.availability(args.device)
        if not avail:
            print(f"{cand.name}: cannot run on {args.device}: {avail.reason}")
            code = max(code, EXIT_UNAVAILABLE if not args.all else EXIT_OK)
            continue
        try:
            section = B.bench(cand, shapes=shapes, dtypes=args.dtype, device=args.device, profile=profile,
                              seed=args.seed, baseline=not args.no_baseline)
        except CandidateError as exc:
            raise UsageError(str(exc)) from None
        print(render.render_throughput_text(cand.name, section))
        print()
        if any(r["status"] in ("invalid", "error") for r in section["rows"]):
            code = max(code, EXIT_NONCONFORMANT)
        results.append({"candidate": {"spec": spec, **cand.info.as_dict()}, "throughput": section})
    if json_path is not None:
        atomic_write(json_path, dumps(bench_document(results, device=args.device, command=_command_line(args.argv))))
        print(f"wrote {json_path}")
    return code


# ---------------------------------------------------------------------------
# reproduce, diff
# ---------------------------------------------------------------------------


def _cmd_reproduce(args) -> int:
    from .candidate import CandidateError
    from .cases import CASES_BY_ID
    from .evaluate import evaluate
    from .loading import load_candidate
    from .report import ReportError, decode_counterexample, load_report

    try:
        report = load_report(args.report)
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    rec = next((r for r in report["checks"] if r["id"] == args.check_id), None)
    if rec is None:
        raise UsageError(f"{args.report}: no check {args.check_id!r}")
    ce = rec.get("counterexample")
    if not ce:
        p = rec["params"]
        cmd = (f"sapo-conformance run {shlex.quote(report['candidate']['spec'])} --check "
               f"{shlex.quote(rec['check'].split(':')[0])} --dtype {p['dtype']}"
               + (f" --mode {p['loss_agg_mode']}" if p["loss_agg_mode"] else "")
               + f" --seed {report['run']['seed']} --profile {report['run']['profile']}")
        print(f"{rec['id']} has no single counterexample; re-run its check:\n  {cmd}")
        return EXIT_USAGE
    try:
        example = decode_counterexample(ce)
        cand = load_candidate(report["candidate"]["spec"])
    except (ValueError, CandidateError) as exc:
        raise UsageError(str(exc)) from None
    batch = example.batch if example.batch is not None else CASES_BY_ID[example.case].make()
    ev = evaluate(cand, batch, dtype=example.dtype, device=rec["params"]["device"], options=example.options,
                  layout=example.layout)
    print(f"{rec['id']} on {cand.name}: options {example.options}, dtype {example.dtype}, "
          f"layout {example.layout}")
    for comp in ev.comparisons:
        print("  " + comp.describe())
    return EXIT_OK if ev.passed else EXIT_NONCONFORMANT


def _cmd_golden_regen(args) -> int:
    from . import golden

    out = Path(args.out) if args.out else golden.default_dir()
    manifest = golden.regenerate(out, seed=args.seed)
    print(f"wrote {len(manifest['cases'])} cases in {len(manifest['files'])} files to {out} "
          f"(oracle {manifest['oracle_version']}, seed {manifest['generator_seed']})")
    return EXIT_OK


def _cmd_golden_verify(args) -> int:
    from . import golden

    directory = Path(args.dir) if args.dir else golden.default_dir()
    try:
        manifest, changes, n = golden.verify(directory)
    except golden.GoldenError as exc:
        raise UsageError(str(exc)) from None
    if manifest["oracle_version"] != ORACLE_VERSION:
        print(f"note: fixtures were made by oracle {manifest['oracle_version']}, this is {ORACLE_VERSION}")
    if changes:
        for c in changes[:50]:
            print(f"  changed: {c.describe()}")
        more = f" (+{len(changes) - 50} more)" if len(changes) > 50 else ""
        print(f"{len({c.case for c in changes})} of {n} cases changed{more}: the oracle's outputs moved; "
              f"if that is intended, bump ORACLE_VERSION and run `sapo-conformance golden regen`")
        return EXIT_NONCONFORMANT
    exact = "bit-identical on the reproducible path, " if manifest.get("oracle_path") == "reproducible" else ""
    print(f"golden fixtures verified: {n} cases in {len(manifest['files'])} files at {directory}, {exact}within "
          f"{golden.ULP_TOLERANCE:g} ulp on the fast path (the loss and metrics within {golden.SUM_TOLERANCE:g} units of "
          f"their sum bound)")
    return EXIT_OK


def _cmd_diff(args) -> int:
    from . import render
    from .report import ReportError, load_report

    try:
        old, new = load_report(args.old), load_report(args.new)
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    if args.include_noisy and args.fail_slower is None:
        raise UsageError("--include-noisy only applies with --fail-slower")
    d = render.diff_reports(old, new, slower_threshold=args.fail_slower, include_noisy=args.include_noisy)
    print(render.render_diff(d))
    return EXIT_NONCONFORMANT if d["regression"] else EXIT_OK


# ---------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _memory_limit(text: str):
    from .isolate import parse_size

    if text == "default":
        return text
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``--help`` shows the usage)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .bench import BENCH_PROFILES, NOISY_SPREAD
    from .checks import SUITE_PROFILES
    from .isolate import DEFAULT_GROUP_TIMEOUT_S

    parser = _Parser(
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

    p = sub.add_parser("run", help="certify a candidate and write a conformance report")
    p.add_argument("candidate", nargs="?", help="registered name or module:attr (default: $SAPO_CANDIDATE)")
    p.add_argument("--all", action="store_true", help="certify every registered candidate; write a matrix")
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                   help="with --all: certify N candidates at a time, each in its own process")
    p.add_argument("--profile", choices=sorted(SUITE_PROFILES), default="default",
                   help="quick (seconds), default (CI), thorough (hunts worst cases)")
    p.add_argument("--report-dir", default="sapo-report", help="where to write report.json/.md/.html")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", action="append", help="restrict to this dtype (repeatable)")
    p.add_argument("--mode", action="append", choices=LOSS_AGG_MODES, help="restrict to this aggregation mode")
    p.add_argument("--check", action="append", help="only checks matching this glob (repeatable), e.g. 'edge.*'")
    p.add_argument("--seed", type=int, default=0, help="seed of the random checks (default 0: reproducible)")
    p.add_argument("--junit", help="also write JUnit XML to this file")
    p.add_argument("--golden-only", action="store_true", help="only replay the golden fixtures")
    p.add_argument("--golden-dir", help="golden fixture directory (default: golden/ or $SAPO_GOLDEN_DIR)")
    p.add_argument("--throughput", choices=("none",) + tuple(BENCH_PROFILES),
                   help="throughput section (default: quick for --profile default, default for thorough, "
                        "none for quick)")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                   help="run the candidate in a separate process, so a crash or hang is a check error "
                        "(default: on)")
    p.add_argument("--timeout", type=_positive_seconds, default=DEFAULT_GROUP_TIMEOUT_S, metavar="SECONDS",
                   help=f"deadline of each check group when isolated (default {DEFAULT_GROUP_TIMEOUT_S:g})")
    p.add_argument("--memory-limit", type=_memory_limit, default="default", metavar="SIZE",
                   help="address-space limit of the isolated candidate, e.g. 4G or none "
                        "(default: 8G or half the memory; none on CUDA)")
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
    p.add_argument("--rounds", type=int, help="timed calls per contender and shape")
    p.add_argument("--no-baseline", action="store_true", help="do not time torch-eager alongside")
    p.add_argument("--oracle", action="store_true",
                   help="time the float64 oracle, default and reproducible, against one np.exp pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("reproduce", help="re-run one failing check of a report on its counterexample")
    p.add_argument("report", help="a report.json")
    p.add_argument("check_id", help="the check's id, e.g. 'random:grad[float32,token-mean]'")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("golden", help="regenerate or verify the golden fixtures")
    gsub = p.add_subparsers(dest="golden_command", metavar="ACTION", required=True)
    g = gsub.add_parser("regen", help="regenerate the fixtures (deterministic, atomic)")
    g.add_argument("--out", help="directory (default: golden/ of this checkout or $SAPO_GOLDEN_DIR)")
    g.add_argument("--seed", type=int, default=20251120)
    g.set_defaults(func=_cmd_golden_regen)
    g = gsub.add_parser("verify", help="recompute every case with the current oracle (2 ulp)")
    g.add_argument("--dir", help="directory (default: golden/ of this checkout or $SAPO_GOLDEN_DIR)")
    g.set_defaults(func=_cmd_golden_verify)

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

    select_triton_backend()
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # module:attr resolves from here, as with python -m
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
    except UsageError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_HARNESS
    except Exception as exc:  # a bug in the harness: say so, with the cause
        _err(f"harness error: {type(exc).__name__}: {exc}")
        return EXIT_HARNESS


if __name__ == "__main__":
    sys.exit(main())
