"""The pytest plugin: ``pytest --sapo-candidate NAME`` runs the suites.

Registered through the ``pytest11`` entry point, so it is active wherever
sapo-conformance is installed; without ``--sapo-candidate`` it does nothing.
Each check unit (a check for one dtype and aggregation mode) becomes one
test item, named like ``sapo[torch-eager]::random[float32,token-mean]``,
marked ``sapo`` (``pytest -m sapo`` runs only these).  Candidates load as
the command line loads them (``conformance.pipeline.open_runner``) and run
in a worker process unless ``--no-sapo-isolate``; an item that takes longer
than ``--sapo-timeout`` fails instead of hanging the session.

With ``--sapo-bench`` each candidate also gets throughput items for
pytest-benchmark, named like ``sapo-bench[torch-eager]::64x4096-float32``:
forward + backward on fresh prepared inputs (conversion is not timed), the
outputs checked against the oracle afterwards.  pytest-benchmark's storage
and ``--benchmark-compare-fail`` make them a regression gate (README).
"""

from __future__ import annotations

import argparse

import pytest


def pytest_addoption(parser):
    from .isolate import DEFAULT_GROUP_TIMEOUT_S
    from .suite import SUITE_PROFILES

    group = parser.getgroup("sapo-conformance", "certify a SAPO implementation")
    group.addoption("--sapo-candidate", action="append", default=[], metavar="NAME",
                    help="candidate to certify: a registered name or module:attr (repeatable)")
    group.addoption("--sapo-profile", default="default", choices=sorted(SUITE_PROFILES),
                    help="suite profile (default: default)")
    group.addoption("--sapo-device", default="cpu", choices=("cpu", "cuda"))
    group.addoption("--sapo-seed", type=int, default=0)
    group.addoption("--sapo-check", action="append", default=None, metavar="GLOB",
                    help="only checks matching this glob (repeatable)")
    group.addoption("--sapo-isolate", action=argparse.BooleanOptionalAction, default=True,
                    help="run the candidate in a worker process, so that a crash or hang fails one item "
                         "(default: on)")
    group.addoption("--sapo-timeout", type=float, default=DEFAULT_GROUP_TIMEOUT_S, metavar="SECONDS",
                    help=f"deadline of each item when isolated (default {DEFAULT_GROUP_TIMEOUT_S:g})")
    group.addoption("--sapo-bench", action="store_true",
                    help="also benchmark each candidate with pytest-benchmark (throughput regression gate)")
    group.addoption("--sapo-bench-shape", action="append", default=None, metavar="BxT",
                    help="benchmark shape (repeatable; default: the quick bench profile's)")
    group.addoption("--sapo-bench-dtype", action="append", default=None, metavar="DTYPE",
                    help="benchmark dtype (repeatable; default: float32)")


def pytest_configure(config):
    config.addinivalue_line("markers", "sapo: a sapo-conformance item (select only these with -m sapo)")


class SapoCheckFailure(Exception):
    pass


def failure_text(records) -> str:
    """The failing records of one item, one line each, small counterexamples inline."""
    lines = []
    for r in records:
        if r.status not in ("fail", "error"):
            continue
        lines.append(f"{r.id}: {r.status}: {r.message}")
        ce = r.counterexample
        if ce is not None and ce.batch is not None and ce.batch.logprob.size <= 64:
            b = ce.batch
            lines.append(f"    counterexample: logprob={b.logprob.tolist()} old_logprob="
                         f"{b.old_logprob.tolist()} advantages={b.advantages.tolist()} "
                         f"mask={b.mask.astype(int).tolist()} options={ce.options} layout={ce.layout}")
    return "\n".join(lines)


class SapoUnitItem(pytest.Item):
    """One check unit, run through the candidate's runner (in a worker by default)."""

    def __init__(self, *, unit, suite, **kwargs):
        super().__init__(**kwargs)
        self.unit = unit
        self.suite = suite
        self.add_marker("sapo")

    def runtest(self):
        text = failure_text(self.suite.runner.run_units([self.unit]))
        if text:
            raise SapoCheckFailure(text)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, SapoCheckFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return "sapo-conformance", None, self.name


class SapoProblemItem(pytest.Item):
    """Stands for a candidate that cannot be loaded (fails) or run here (skips)."""

    def __init__(self, *, problem, skip, **kwargs):
        super().__init__(**kwargs)
        self.problem, self.skip = problem, skip
        self.add_marker("sapo")

    def runtest(self):
        if self.skip:
            pytest.skip(self.problem)
        raise SapoCheckFailure(self.problem)

    def repr_failure(self, excinfo):
        return str(excinfo.value)

    def reportinfo(self):
        return "sapo-conformance", None, self.name


class SapoSuite(pytest.Collector):
    """One candidate: its runner (opened by ``conformance.pipeline``, as the
    command line opens it) and one item per unit."""

    def __init__(self, *, spec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.runner = None

    def collect(self):
        from .isolate import CandidateCrashed
        from .pipeline import CandidateUnavailable, RequestError, open_runner, plan_units

        opt = self.config.getoption
        try:
            self.runner = open_runner(self.spec, isolate=opt("sapo_isolate"), device=opt("sapo_device"),
                                      profile=opt("sapo_profile"), seed=opt("sapo_seed"),
                                      timeout_s=opt("sapo_timeout"))
            self.config.add_cleanup(self.runner.close)
            avail = self.runner.availability()
            if not avail:
                raise CandidateUnavailable(avail.reason)
            units = plan_units(self.runner.candidate, checks=opt("sapo_check"))
        except CandidateUnavailable as exc:
            return [SapoProblemItem.from_parent(self, name="unavailable", problem=str(exc), skip=True)]
        except (RequestError, CandidateCrashed) as exc:
            return [SapoProblemItem.from_parent(self, name="load", problem=str(exc), skip=False)]
        return [SapoUnitItem.from_parent(self, name=u.id, unit=u, suite=self) for u in units]


class SapoBenchItem(pytest.Function):
    """One pytest-benchmark measurement: a candidate at one shape and dtype."""

    def reportinfo(self):
        return "sapo-conformance", None, self.name


def _bench_function(candidate, B: int, T: int, dtype: str, device: str, seed: int):
    def sapo_throughput(benchmark):
        import itertools

        from . import bench

        why = bench.timing_unavailable(candidate, device)
        if why:
            pytest.skip(why)
        profile = bench.BENCH_PROFILES["quick"]
        timed = bench.timed_call(candidate, B, T, dtype, device=device, profile=profile, seed=seed)
        counter = itertools.count()

        def setup():
            return (next(counter) % timed.sets,), {}

        benchmark.extra_info.update(tokens=B * T, bytes=timed.bytes, dtype=dtype, device=device, layout=timed.layout)
        timed.call(0)  # the cold (compiling) call, outside the statistics
        benchmark.pedantic(timed.run, setup=setup, rounds=profile.rounds * 2, warmup_rounds=profile.warmup,
                           iterations=1)
        problems = timed.check_outputs()
        assert not problems, "; ".join(problems)

    return sapo_throughput


def _bench_items(parent, candidate, config):
    from .bench import BENCH_PROFILES, parse_shape

    opt = config.getoption
    try:
        shapes = [parse_shape(x) for x in opt("sapo_bench_shape")] if opt("sapo_bench_shape") \
            else list(BENCH_PROFILES["quick"].shapes)
    except ValueError as exc:
        raise pytest.UsageError(f"--sapo-bench-shape: {exc}") from None
    dtypes = opt("sapo_bench_dtype") or ["float32"]
    items = []
    for dtype in dtypes:
        if dtype not in candidate.info.dtypes:
            continue
        for B, T in shapes:
            fn = _bench_function(candidate, B, T, dtype, opt("sapo_device"), opt("sapo_seed"))
            items.append(SapoBenchItem.from_parent(parent, name=f"{B}x{T}-{dtype}", callobj=fn))
    return items


class SapoBench(pytest.Collector):
    """Throughput items: timed in this process (whatever --sapo-isolate says)."""

    def __init__(self, *, spec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def collect(self):
        from .candidate import CandidateError
        from .loading import load_candidate

        try:
            candidate = load_candidate(self.spec)
        except CandidateError as exc:
            return [SapoProblemItem.from_parent(self, name="load", problem=str(exc), skip=False)]
        return _bench_items(self, candidate, self.config)


def pytest_collection_modifyitems(session, config, items):
    from .builtins import select_triton_backend

    specs = config.getoption("sapo_candidate")
    if not specs:
        return
    select_triton_backend()
    bench = config.getoption("sapo_bench")
    bench_only = bench and config.getoption("benchmark_only", False)
    for spec in specs:
        suite = SapoSuite.from_parent(session, name=f"sapo[{spec}]", spec=spec)
        collected = suite.collect()
        units = [i for i in collected if isinstance(i, SapoUnitItem)]
        if not (bench_only and units):  # a candidate that cannot load or run still shows why
            items.extend(collected)
        if bench and units:
            items.extend(SapoBench.from_parent(session, name=f"sapo-bench[{suite.runner.candidate.name}]",
                                               spec=spec).collect())
