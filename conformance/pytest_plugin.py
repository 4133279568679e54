"""The pytest plugin: ``pytest --sapo-candidate NAME`` runs the suites.

Registered through the ``pytest11`` entry point, so it is active wherever
sapo-conformance is installed; without ``--sapo-candidate`` it does nothing.
Each check unit (a check for one dtype and aggregation mode) becomes one
test item, named like ``sapo[torch-eager]::random[float32,token-mean]``.

With ``--sapo-bench`` each candidate also gets throughput items for
pytest-benchmark, named like ``sapo-bench[torch-eager]::64x4096-float32``:
forward + backward on fresh prepared inputs (conversion is not timed), the
outputs checked against the oracle afterwards.  pytest-benchmark's storage
and ``--benchmark-compare-fail`` make them a regression gate (README).
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    from .checks import SUITE_PROFILES

    group = parser.getgroup("sapo-conformance", "certify a SAPO implementation")
    group.addoption("--sapo-candidate", action="append", default=[], metavar="NAME",
                    help="candidate to certify: a registered name or module:attr (repeatable)")
    group.addoption("--sapo-profile", default="default", choices=sorted(SUITE_PROFILES),
                    help="suite profile (default: default)")
    group.addoption("--sapo-device", default="cpu", choices=("cpu", "cuda"))
    group.addoption("--sapo-seed", type=int, default=0)
    group.addoption("--sapo-check", action="append", default=None, metavar="GLOB",
                    help="only checks matching this glob (repeatable)")
    group.addoption("--sapo-bench", action="store_true",
                    help="also benchmark each candidate with pytest-benchmark (throughput regression gate)")
    group.addoption("--sapo-bench-shape", action="append", default=None, metavar="BxT",
                    help="benchmark shape (repeatable; default: the quick bench profile's)")
    group.addoption("--sapo-bench-dtype", action="append", default=None, metavar="DTYPE",
                    help="benchmark dtype (repeatable; default: float32)")


class SapoCheckFailure(Exception):
    pass


class SapoUnitItem(pytest.Item):
    def __init__(self, *, unit, candidate, **kwargs):
        super().__init__(**kwargs)
        self.unit = unit
        self.candidate = candidate

    def runtest(self):
        from .checks import SUITE_PROFILES, Context

        opt = self.config.getoption
        ctx = Context(self.candidate, opt("sapo_device"), SUITE_PROFILES[opt("sapo_profile")], opt("sapo_seed"))
        records = self.unit.check.run(ctx, self.unit.dtype, self.unit.mode)
        bad = [r for r in records if r.status in ("fail", "error")]
        if bad:
            lines = []
            for r in bad:
                lines.append(f"{r.id}: {r.status}: {r.message}")
                ce = r.counterexample
                if ce is not None and ce.batch is not None and ce.batch.logprob.size <= 64:
                    b = ce.batch
                    lines.append(f"    counterexample: logprob={b.logprob.tolist()} old_logprob="
                                 f"{b.old_logprob.tolist()} advantages={b.advantages.tolist()} "
                                 f"mask={b.mask.astype(int).tolist()} options={ce.options} layout={ce.layout}")
            raise SapoCheckFailure("\n".join(lines))

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

    def runtest(self):
        if self.skip:
            pytest.skip(self.problem)
        raise SapoCheckFailure(self.problem)

    def repr_failure(self, excinfo):
        return str(excinfo.value)

    def reportinfo(self):
        return "sapo-conformance", None, self.name


class SapoSuite(pytest.Collector):
    def __init__(self, *, spec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def collect(self):
        from .candidate import CandidateError
        from .loading import load_candidate
        from .runner import plan

        opt = self.config.getoption
        try:
            cand = load_candidate(self.spec)
            avail = cand.availability(opt("sapo_device"))
            if not avail:
                return [SapoProblemItem.from_parent(self, name="unavailable", problem=avail.reason, skip=True)]
            units = plan(cand, checks=opt("sapo_check"))
        except CandidateError as exc:
            return [SapoProblemItem.from_parent(self, name="load", problem=str(exc), skip=False)]
        return [SapoUnitItem.from_parent(self, name=u.id, unit=u, candidate=cand) for u in units]


class SapoBenchItem(pytest.Function):
    """One pytest-benchmark measurement: a candidate at one shape and dtype."""

    def reportinfo(self):
        return "sapo-conformance", None, self.name


def _bench_function(candidate, B: int, T: int, dtype: str, device: str, seed: int):
    def sapo_throughput(benchmark):
        import itertools

        from . import bench as B_
        from .candidate import CallOptions
        from .drivers import get_driver

        why = B_.timing_unavailable(candidate, device)
        if why:
            pytest.skip(why)
        profile = B_.BENCH_PROFILES["quick"]
        layout = B_._layout_for(candidate)
        nbytes = B_.minimum_bytes(candidate, B, T, dtype, layout)
        sets = B_._sets_for(nbytes, profile)
        contender = B_._CandidateContender(
            candidate, [B_.make_batch(B, T, seed * 1_000_003 + 7919 * k + 1) for k in range(sets)],
            dtype, device, layout, CallOptions())
        driver = get_driver(candidate.info.framework)
        counter = itertools.count()

        def setup():
            return (next(counter) % sets,), {}

        def target(k):
            contender.last_raw[k] = driver.run(contender.prepared[k], contender.options)

        benchmark.extra_info.update(tokens=B * T, bytes=nbytes, dtype=dtype, device=device, layout=layout)
        contender.call(0)  # the cold (compiling) call, outside the statistics
        benchmark.pedantic(target, setup=setup, rounds=profile.rounds * 2, warmup_rounds=profile.warmup,
                           iterations=1)
        problems = contender.check_outputs()
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
    def __init__(self, *, candidate, **kwargs):
        super().__init__(**kwargs)
        self.candidate = candidate

    def collect(self):
        return _bench_items(self, self.candidate, self.config)


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
            items.extend(SapoBench.from_parent(session, name=f"sapo-bench[{units[0].candidate.name}]",
                                               candidate=units[0].candidate).collect())
