"""Certification as a library: :func:`certify` one candidate, :func:`certify_all`.

Every front end (the command line, the pytest plugin) calls these; they
plan the units, run them in this process or in a worker
(``conformance.isolate``), measure throughput, and return a :class:`Report`.
Nothing is written unless you call :meth:`Report.write`.

Exceptions, so that a front end can map them to its own outcome:

* :class:`RequestError` (a ``ValueError``): the request cannot run -- an
  unknown candidate, an unclaimed dtype or mode, a check glob that matches
  nothing.  Raised before anything runs.
* :class:`CandidateUnavailable`: the candidate cannot run on this device.
* ``conformance.isolate.CandidateCrashed``: its process died while loading.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from .candidate import Candidate, CandidateError
from .profiles import DEFAULT_GROUP_TIMEOUT_S, SUITE_PROFILES

if TYPE_CHECKING:  # pragma: no cover
    from .suite import Record, Runner, Unit

#: the files of one report, and of a matrix (``certify_all``)
REPORT_FILES = ("report.json", "report.md", "report.html")
MATRIX_FILES = ("matrix.json", "matrix.md", "matrix.html")
#: "auto" memory limit: 8 GiB or half the machine (none on CUDA)
AUTO = "auto"


class RequestError(ValueError):
    """The certification request is wrong (names the argument and the problem)."""


class CandidateUnavailable(Exception):
    """The candidate cannot run on the requested device; the message says why."""


@dataclass
class Report:
    """A finished certification: the report document and, for a run made in
    this session, its records.

    ``document`` is what ``report.json`` holds (schema in ``conformance.report``).
    """

    document: dict
    records: list[Record] = field(default_factory=list, repr=False)

    @property
    def verdict(self) -> str:
        """"conformant" or "non-conformant" (see :attr:`partial`)."""
        return self.document["verdict"]

    @property
    def conformant(self) -> bool:
        return self.verdict == "conformant"

    @property
    def harness_error(self) -> str | None:
        """One line when the verdict is "harness-error" (exit code 3): a
        check, the oracle or the harness raised; None otherwise."""
        from .report import harness_error_line

        return harness_error_line(self.document) if self.verdict == "harness-error" else None

    @property
    def fails(self) -> bool:
        """Should a CI job fail on this report?  An unaccepted finding in a
        ``fail_on`` category, no passing check, or a stale accept entry
        under ``strict_accept`` (README "Exit codes")."""
        from .report import fails

        return fails(self.document)

    @property
    def findings(self) -> list[dict]:
        """One per root cause: category, diagnosis, fix, records (report.json form)."""
        return list(self.document.get("findings") or [])

    @property
    def partial(self) -> list[str]:
        """What the run was restricted to (empty: every check, dtype and mode)."""
        return list(self.document["run"].get("partial") or [])

    @property
    def verdict_text(self) -> str:
        from .report import verdict_text

        return verdict_text(self.document)

    @property
    def summary(self) -> dict:
        return self.document["summary"]

    @property
    def failures(self) -> list[dict]:
        """The failing and erroring check records, as in report.json."""
        return [r for r in self.document["checks"] if r["status"] in ("fail", "error")]

    @property
    def throughput(self) -> dict | None:
        return self.document.get("throughput")

    def to_json(self) -> str:
        from .report import dumps

        return dumps(self.document)

    def write(self, directory, *, junit=None) -> Path:
        """Write report.json, report.md and report.html into ``directory``
        (created if needed), each atomically, report.json last (a complete
        report.json means a complete set); ``junit``: also JUnit XML there.
        Returns the path of report.json."""
        from . import render
        from .report import atomic_write

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        old = directory / "report.json"
        if old.exists():
            old.unlink()
        atomic_write(directory / "report.md", render.render_markdown(self.document))
        atomic_write(directory / "report.html", render.render_html(self.document))
        if junit is not None:
            atomic_write(Path(junit), render.render_junit(self.document))
        atomic_write(directory / "report.json", self.to_json())
        return directory / "report.json"

    @classmethod
    def load(cls, path) -> Report:
        """A report.json written before (``ReportError`` if it is not one)."""
        from .report import load_report

        return cls(load_report(path))


def _check_request(profile: str, device: str, throughput: str | None) -> None:
    from .bench import BENCH_PROFILES

    if profile not in SUITE_PROFILES:
        raise RequestError(f"profile {profile!r} is not one of {', '.join(sorted(SUITE_PROFILES))}")
    if device not in ("cpu", "cuda"):
        raise RequestError(f"device {device!r} is not one of cpu, cuda")
    if throughput not in (None, "none") and throughput not in BENCH_PROFILES:
        raise RequestError(f"throughput {throughput!r} is not one of none, {', '.join(BENCH_PROFILES)}")


def open_runner(candidate, *, isolate: bool | None = None, device: str = "cpu", profile: str = "default",
                seed: int = 0, timeout_s: float | None = None, memory_limit=AUTO) -> Runner:
    """A runner for the candidate: a worker process for a name or
    ``module:attr`` (unless ``isolate`` is False), this process for an object.
    RequestError if it cannot be loaded; CandidateCrashed if its worker died
    loading it.  Close it when done.  Like the command line, it puts the
    current directory on ``sys.path`` so that ``module:attr`` resolves from it."""
    from .loading import load_candidate, search_working_directory
    from .suite import InProcessRunner

    search_working_directory()
    timeout_s = DEFAULT_GROUP_TIMEOUT_S if timeout_s is None else timeout_s
    if isolate is None:
        isolate = isinstance(candidate, str)
    if isolate:
        if not isinstance(candidate, str):
            raise RequestError("isolate=True needs the candidate as a registered name or 'module:attr' "
                               "(a worker process loads it); pass isolate=False to run an object in this process")
        from .isolate import CandidateCrashed, IsolatedRunner, default_memory_limit

        if memory_limit == AUTO:
            memory_limit = None if device == "cuda" else default_memory_limit()
        runner = IsolatedRunner(candidate, device=device, profile=profile, seed=seed, memory_limit=memory_limit,
                                group_timeout_s=timeout_s)
        try:
            runner.start()
        except CandidateCrashed:  # its process died: the caller decides what that means
            raise
        except CandidateError as exc:
            raise RequestError(str(exc)) from None
        return runner
    try:
        cand = load_candidate(candidate)
    except CandidateError as exc:
        raise RequestError(str(exc)) from None
    return InProcessRunner(cand, device=device, profile=profile, seed=seed)


def _partial(checks, dtypes, modes) -> list[str]:
    parts = []
    for flag, values in (("checks", checks), ("dtypes", dtypes), ("modes", modes)):
        if values:
            parts.append(f"{flag} {', '.join(values)}")
    return parts


def certify(candidate, *, profile: str = "default", device: str = "cpu", seed: int = 0,
            dtypes: Iterable[str] | None = None, modes: Iterable[str] | None = None,
            checks: Iterable[str] | None = None, isolate: bool | None = None, throughput: str | None = None,
            timeout_s: float | None = None, memory_limit=AUTO, progress: bool | Callable = False,
            label: str | None = None, command: str | None = None, report_path: str = "report.json",
            accept=None, strict_accept: bool = False, fail_on: Iterable[str] | None = None) -> Report:
    """Certify one candidate against the oracle and return its report.

    ``candidate``: a registered name, ``"module:attr"``, a :class:`Candidate`
    or a factory of one.  ``profile``: quick, default (CI) or thorough.
    ``dtypes``/``modes``/``checks`` (glob patterns on check names) restrict the
    run; the verdict then says "partial".  ``isolate``: run the candidate in a
    worker process, so that a crash or hang is a check error (default: yes for
    a name or ``module:attr``, no for an object).  ``throughput``: the bench
    profile of the report's throughput section ("none" for none; default:
    the suite profile's, none when ``checks`` restricts the run).  ``timeout_s``: the
    deadline of each check group when isolated.  ``memory_limit``: bytes,
    None, or "auto".  ``progress``: True for progress lines on stderr, or a
    callable ``(done, total, unit, records)``.  ``accept``: declared
    deviations -- an accept file's path, or a list of paths and
    :class:`conformance.accept.Entry` (README "Declared deviations");
    ``strict_accept``: a stale entry fails the run.  ``fail_on``: the finding
    categories that make :attr:`Report.fails` true (default: all).
    """
    from .report import build_report
    from .suite import RepeatedError, terminal_progress

    _check_request(profile, device, throughput)
    entries = accept_entries(accept)
    fail_on = _check_fail_on(fail_on)
    dtypes = None if dtypes is None else list(dtypes)
    modes = None if modes is None else list(modes)
    checks = None if checks is None else list(checks)
    runner = open_runner(candidate, isolate=isolate, device=device, profile=profile, seed=seed,
                         timeout_s=timeout_s, memory_limit=memory_limit)
    try:
        cand = runner.candidate
        avail = runner.availability()
        if not avail:
            raise CandidateUnavailable(f"{cand.name} cannot run on {device}: {avail.reason}")
        units = plan_units(cand, dtypes=dtypes, modes=modes, checks=checks)
        report_progress = terminal_progress() if progress is True else (progress or None)
        if progress is True:
            print(f"certifying {cand.name} ({len(units)} check units, profile {profile}, device {device}, "
                  f"{runner.where})", file=sys.stderr)
        start = time.perf_counter()
        repeated = RepeatedError()
        records = runner.run_units(units, report_progress, repeated)
        remaining = [u for u in units if u.id not in repeated.finished]
        if remaining:
            records.append(repeated.not_run(remaining, device))
        if throughput is None and not checks:  # a partial run is not a benchmark
            throughput = SUITE_PROFILES[profile].throughput
        section = _throughput(runner, throughput, dtypes, progress is True)
    finally:
        runner.close()
    spec = label or (candidate if isinstance(candidate, str) else cand.name)
    document = build_report(cand, spec, records, profile=profile, seed=seed, device=device,
                            dtypes=dtypes or cand.info.dtypes, modes=modes or cand.info.loss_agg_modes,
                            checks=checks, duration_s=time.perf_counter() - start,
                            command=command or _python_call(spec, profile), report_path=report_path,
                            throughput=section, compilations=runner.compilations(),
                            partial=_partial(checks, dtypes, modes), accept=entries,
                            strict_accept=strict_accept, fail_on=fail_on)
    return Report(document, records)


def accept_entries(accept) -> list:
    """Accept entries from a path, an Entry, or a list of either;
    RequestError naming the file and entry when one is malformed."""
    from .accept import AcceptError, Entry, load

    if accept is None:
        return []
    items = [accept] if isinstance(accept, (str, Path, Entry)) else list(accept)
    out = []
    try:
        for item in items:
            out.extend([item] if isinstance(item, Entry) else load(item))
    except AcceptError as exc:
        raise RequestError(str(exc)) from None
    return out


def accept_sources(files, *, project: bool, quiet: bool = False) -> list:
    """The accept files of a command line, and -- with ``project`` -- the
    nearest pyproject.toml with a [tool.sapo-conformance] table, said on
    stderr so that a deviation is never accepted unseen."""
    from .accept import discover

    sources = list(files or [])
    found = discover(Path.cwd()) if project else None
    if found is not None:
        sources.append(found)
        if not quiet:
            print(f"accepting the deviations declared in {found} [tool.sapo-conformance]", file=sys.stderr)
    return sources


def _check_fail_on(fail_on) -> list[str] | None:
    from .tolerance import CATEGORIES

    if fail_on is None:
        return None
    fail_on = [c.strip() for c in fail_on.split(",") if c.strip()] if isinstance(fail_on, str) else list(fail_on)
    bad = [c for c in fail_on if c not in CATEGORIES]
    if bad or not fail_on:
        raise RequestError(f"fail_on: unknown categor{'ies' if len(bad) > 1 else 'y'} {', '.join(map(repr, bad))}"
                           f" (choose from {', '.join(CATEGORIES)})" if bad else
                           f"fail_on: give at least one of {', '.join(CATEGORIES)}")
    return fail_on


def plan_units(cand: Candidate, *, dtypes=None, modes=None, checks=None) -> list[Unit]:
    """The units of a run (RequestError for an unclaimed dtype or mode, or
    check globs that match nothing)."""
    from .suite import CHECKS, plan

    try:
        units = plan(cand, dtypes=dtypes, modes=modes, checks=checks)
    except CandidateError as exc:
        raise RequestError(str(exc)) from None
    if not units:
        families = sorted({c.name.split(".")[0] + (".*" if "." in c.name else "") for c in CHECKS})
        raise RequestError(f"no check matches {', '.join(checks or ['*'])} for {cand.name} "
                           f"(checks: {', '.join(families)})")
    return units


def _throughput(runner: Runner, name: str | None, dtypes, announce: bool) -> dict | None:
    from .bench import BENCH_PROFILES

    if name in (None, "none"):
        return None
    if announce:
        print(f"  throughput ({name}: {len(BENCH_PROFILES[name].shapes)} shapes)", file=sys.stderr)
    asked = dtypes or runner.candidate.info.dtypes
    return runner.bench(name, [d for d in asked if d != "float64"] or list(asked))


def _python_call(spec: str, profile: str) -> str:
    return f"conformance.certify({spec!r}, profile={profile!r})"


# ---------------------------------------------------------------------------
# every registered candidate
# ---------------------------------------------------------------------------


@dataclass
class Entry:
    """One candidate of :func:`certify_all`: its report, or why it has none."""

    name: str
    status: str  # "ran" | "unavailable" | "error"
    reason: str = ""
    report: Report | None = None

    def __str__(self) -> str:
        return f"{self.name}: {self.report.verdict_text if self.report else f'{self.status} ({self.reason})'}"


def certify_all(names: Iterable[str] | None = None, *, jobs: int = 1, isolate: bool = True,
                on_done: Callable[[Entry], None] | None = None, **options) -> list[Entry]:
    """Certify every registered candidate (or ``names``), ``jobs`` at a time,
    each in its own worker process unless ``isolate`` is False.  Candidates
    are loaded only in their workers, so one that crashes on import is an
    ``error`` entry, not the end of the run.  Entries come back in
    registration order; each unit's seed depends only on its own id, so a
    parallel run gives the serial run's reports (without a throughput
    section unless ``throughput`` asks: candidates sharing the CPUs are not a
    benchmark).  ``options`` go to
    :func:`certify`; ``on_done`` is called as each candidate finishes."""
    from concurrent.futures import ThreadPoolExecutor

    from .isolate import CandidateCrashed
    from .loading import registered_names

    if jobs < 1:
        raise RequestError(f"jobs must be at least 1, got {jobs}")
    if jobs > 1 and not isolate:
        raise RequestError("jobs > 1 needs isolation: candidates run in parallel in their own processes")
    if jobs > 1 and options.get("throughput") is None:
        options["throughput"] = "none"  # candidates sharing the CPUs are not a benchmark
    names = registered_names() if names is None else list(names)

    def one(name: str) -> Entry:
        try:
            report = certify(name, isolate=isolate, **options)
            entry = Entry(name, "ran", report=report)
        except CandidateUnavailable as exc:
            entry = Entry(name, "unavailable", str(exc))
        except (RequestError, CandidateCrashed) as exc:
            entry = Entry(name, "error", str(exc))
        if on_done:
            on_done(entry)
        return entry

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, names))


def matrix(entries: list[Entry]) -> dict:
    """The matrix document of a :func:`certify_all` run."""
    from . import compare

    return compare.matrix([{"name": e.name, "status": e.status, "reason": e.reason,
                            **({"report": e.report.document} if e.report else {})} for e in entries])


@dataclass
class Benchmarked:
    """One candidate of :func:`benchmark`: its throughput section, or why none."""

    spec: str
    candidate: Candidate | None = None
    section: dict | None = None
    problem: str = ""  # it could not be loaded or benchmarked
    unavailable: bool = False  # it cannot run on this device

    @property
    def invalid(self) -> bool:
        return self.section is not None and any(r["status"] in ("invalid", "error") for r in self.section["rows"])

    def as_dict(self) -> dict:
        return {"candidate": {"spec": self.spec, **self.candidate.info.as_dict()}, "throughput": self.section}


def benchmark(specs: Iterable, *, shapes, dtypes=None, device: str = "cpu", profile=None, seed: int = 0,
              baseline: bool = True) -> list[Benchmarked]:
    """Throughput of each candidate (``conformance.bench.bench``), in this
    process: a benchmark times the kernel, not a worker's pipe."""
    from . import bench
    from .loading import load_candidate

    out = []
    for spec in specs:
        item = Benchmarked(spec if isinstance(spec, str) else getattr(spec, "name", repr(spec)))
        try:
            item.candidate = load_candidate(spec)
            item.section = bench.bench(item.candidate, shapes=shapes, dtypes=dtypes, device=device,
                                       profile=profile or bench.BENCH_PROFILES["default"], seed=seed,
                                       baseline=baseline)
        except bench.BenchUnavailable as exc:
            item.problem, item.unavailable = str(exc), True
        except CandidateError as exc:
            item.problem = str(exc)
        out.append(item)
    return out


def list_candidates() -> list[dict]:
    """``sapo-conformance list``: every registered candidate, each loaded in
    a worker process of its own (one that crashes on import is a row saying
    so; the workers run side by side), with its claims and the devices it can
    run on here, or why not."""
    from concurrent.futures import ThreadPoolExecutor

    from .isolate import IsolatedRunner, default_memory_limit
    from .loading import registrations

    def row(registration) -> dict:
        name, target, problem = registration
        out = dict(name=name, framework="-", version="-", dtypes=[], devices=[], profile="-", runs_here=False,
                   here=[], reason=problem or "", target=target)
        if problem is not None:
            return out
        runner = IsolatedRunner(target, registered_as=name, device="cpu", profile="default", seed=0,
                                memory_limit=default_memory_limit())
        try:
            runner.start()
            info = runner.candidate.info
            out.update(framework=info.framework, version=info.framework_version, dtypes=list(info.dtypes),
                       devices=list(info.devices), profile=info.profile, runs_here=bool(runner.runnable),
                       here=list(runner.runnable), reason=runner.reason_anywhere)
        except CandidateError as exc:
            out["reason"] = str(exc)
        finally:
            runner.close()
        return out

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return list(pool.map(row, registrations()))


def write_all(entries: list[Entry], directory) -> dict:
    """Each report in ``directory/<name>/``, then the matrix files; returns the matrix."""
    from . import compare
    from .report import atomic_write, dumps

    directory = Path(directory)
    for e in entries:
        if e.report is not None:
            e.report.write(directory / e.name)
    m = matrix(entries)
    atomic_write(directory / "matrix.md", compare.render_matrix_markdown(m))
    atomic_write(directory / "matrix.html", compare.render_matrix_html(m))
    atomic_write(directory / "matrix.json", dumps(m))
    return m


# ---------------------------------------------------------------------------
# report directories
# ---------------------------------------------------------------------------


def prepare_report_dir(path) -> Path:
    """``path`` created if needed, and writable (RequestError if not)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RequestError(f"cannot create report directory {path}: {exc.strerror or exc}") from None
    if not path.is_dir():
        raise RequestError(f"report directory {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise RequestError(f"report directory {path} is not writable")
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


def command_line(argv) -> str:
    return "sapo-conformance " + " ".join(shlex.quote(a) for a in argv)
