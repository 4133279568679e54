"""The pytest plugin: ``pytest --sapo-candidate NAME`` runs the suites.

Registered through the ``pytest11`` entry point, so it is active wherever
sapo-conformance is installed; without ``--sapo-candidate`` it does nothing.
Each check unit (a check for one dtype and aggregation mode) becomes one
test item, named like ``sapo[torch-eager]::random[float32,token-mean]``.
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


def pytest_collection_modifyitems(session, config, items):
    import os

    specs = config.getoption("sapo_candidate")
    if not specs:
        return
    if "TRITON_INTERPRET" not in os.environ and not os.path.exists("/dev/nvidiactl"):
        os.environ["TRITON_INTERPRET"] = "1"
    for spec in specs:
        suite = SapoSuite.from_parent(session, name=f"sapo[{spec}]", spec=spec)
        items.extend(suite.collect())
