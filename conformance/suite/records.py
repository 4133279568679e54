"""What a check run records: one :class:`Record` per compared quantity.

A record holds the worst error seen, in units of the tolerance scale, with
the bound it was measured against; :meth:`Record.observe` is the only place
a record is updated, so the status always follows from what it recorded.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .. import coverage
from ..candidate import Batch, CallOptions, CandidateError
from ..tolerance import more_severe

if TYPE_CHECKING:  # pragma: no cover
    from ..evaluate import Evaluation
    from ..tolerance import Comparison

#: (log-ratio, error) points kept per record, for the report's plots
MAX_SAMPLES = 200
#: where a unit that did not finish failed (suite.runner.failed_unit): the
#: harness itself (a bug in a check or the oracle; never the candidate's) ...
HARNESS = "harness"
#: ... or its isolation (the candidate's worker crashed, hung or was not run)
ISOLATION = "isolation"


@dataclass(frozen=True)
class Counterexample:
    batch: Batch | None
    options: CallOptions
    dtype: str
    layout: str | None
    case: str | None = None  # an edge case id, when the batch is too large to embed


@dataclass
class Record:
    check: str  # e.g. "random:grad", "edge.exp-overflow:loss", "invariant.shards:consistency"
    group: str
    title: str
    dtype: str
    loss_agg_mode: str | None
    device: str
    status: str = "pass"  # pass | fail | error | skip
    max_error: float | None = None  # the error of the worst observation (largest error / bound)
    bound: float | None = None  # the bound of that observation
    #: where in its output that observation's worst element was (an elementwise comparison's index)
    worst_at: tuple | None = None
    examples: int = 0
    duration_s: float = 0.0
    message: str = ""
    counterexample: Counterexample | None = None
    samples: list = field(default_factory=list)  # (log-ratio, error) pairs
    #: a failing record's category (tolerance.CATEGORIES): the most severe seen
    category: str | None = None
    #: the worst finite failure's error in units of the practical tolerance
    practical_error: float | None = None
    #: catalogue ids (conformance.defects) that reproduce the counterexample
    defects: tuple[str, ...] = ()
    #: the error's quantitative shape when no known defect reproduces it
    shape: str = ""
    #: the offending tokens of the counterexample (conformance.diagnose.Evidence as data)
    evidence: dict | None = None
    #: the input ranges the unit's evaluations exercised (conformance.coverage: {dimension: [min, max]})
    coverage: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        params = self.dtype if self.loss_agg_mode is None else f"{self.dtype},{self.loss_agg_mode}"
        return f"{self.check}[{params}]"

    @property
    def ratio(self) -> float | None:
        """The worst error / bound recorded (inf for an error against a bound of 0)."""
        if self.max_error is None or self.bound is None:
            return None
        return error_ratio(self.max_error, self.bound)

    def observe(self, error: float, bound: float, *, passed: bool | None = None, message: str = "",
                counterexample: Counterexample | None = None, samples=(), category: str | None = None,
                practical_error: float | None = None, where: tuple | None = None) -> bool:
        """One comparison.  It fails if ``passed`` says so or its error
        exceeds its bound, in ``category`` (default: semantics).  The first
        failure of the most severe category seen keeps its message and
        example; returns True when this observation became that failure."""
        self.examples += 1
        new = error_ratio(error, bound)
        old = self.ratio
        if old is None or new > old or (new == old and error > (self.max_error or 0.0)):
            self.max_error, self.bound, self.worst_at = error, bound, where
        if len(self.samples) < MAX_SAMPLES:
            self.samples.extend(list(samples)[: MAX_SAMPLES - len(self.samples)])
        failed = (passed is False) or not (new <= 1.0)
        if not failed or self.status == "error":
            return False
        category = category or "semantics"
        if practical_error is not None and math.isfinite(practical_error):
            self.practical_error = max(self.practical_error or 0.0, practical_error)
        if self.status == "fail" and more_severe(self.category, category) == self.category:
            return False
        self.status, self.category = "fail", category
        self.message = message or f"error {error:.3g} > {bound:g}"
        self.counterexample = counterexample
        self.defects, self.shape, self.evidence = (), "", None
        return True

    def raised(self, exc: BaseException | str, counterexample: Counterexample | None = None) -> None:
        """The candidate raised: an error, whatever was recorded before."""
        self.status, self.category = "error", "contract"
        self.message = exc if isinstance(exc, str) else describe_exception(exc)
        self.counterexample = counterexample
        self.defects, self.shape, self.evidence = (), "", None

    def skip(self, reason: str) -> None:
        self.status, self.message = "skip", reason


def error_ratio(error: float, bound: float) -> float:
    """error / bound, inf for NaN or for an error against a bound of 0."""
    if error != error:
        return math.inf
    if bound > 0:
        return error / bound
    return 0.0 if error <= 0 else math.inf


def describe_exception(exc: BaseException) -> str:
    """One line: the type, the first line of the message, and where."""
    if isinstance(exc, CandidateError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}{where}"


def comparison_samples(ev: Evaluation, comp: Comparison) -> list:
    """(log-ratio, error) of the masked-in tokens of an elementwise
    comparison: the largest errors and an even spread of the others."""
    if comp.per_element is None:
        return []
    inp = ev.output.inputs
    per = comp.per_element
    if per.shape[:2] != inp.mask.shape:
        return []  # not per token (a fused kernel's weight gradient)
    if per.ndim > 2:  # per token and vocabulary entry (a fused kernel's logits): the token's worst
        per = per.reshape(per.shape[:2] + (-1,)).max(axis=-1)
    with np.errstate(invalid="ignore"):
        d = inp.logprob - inp.old_logprob
    sel = inp.mask.astype(bool) & np.isfinite(per) & np.isfinite(d)
    d, e = d[sel], per[sel]
    if d.size > MAX_SAMPLES:
        keep = np.argsort(e)[-MAX_SAMPLES // 2:]
        rest = np.setdiff1d(np.arange(d.size), keep)
        keep = np.concatenate([keep, rest[:: max(1, rest.size // (MAX_SAMPLES // 2))]])
        d, e = d[keep], e[keep]
    return [(float(a), float(b)) for a, b in zip(d, e)]


class Tally:
    """The records of one check run (a unit), one per compared quantity."""

    def __init__(self, check: str, group: str, title: str, dtype: str, loss_agg_mode: str | None,
                 device: str):
        self.check, self.group, self.title = check, group, title
        self.dtype, self.loss_agg_mode, self.device = dtype, loss_agg_mode, device
        self.records: dict[str, Record] = {}
        self.coverage: dict = {}

    def record(self, quantity: str) -> Record:
        if quantity not in self.records:
            self.records[quantity] = Record(f"{self.check}:{quantity}", self.group, self.title, self.dtype, self.loss_agg_mode,
                                            self.device)
        return self.records[quantity]

    def add(self, ev: Evaluation, example: Counterexample) -> None:
        """Every comparison of an evaluation, each into its quantity's
        record; a record's new worst failure is diagnosed on the spot,
        while the candidate's outputs are at hand."""
        coverage.observe(self.coverage, ev.output.inputs, ev.options)
        memo: dict = {}  # the diagnoses of this evaluation's comparisons share their predictions
        for comp in ev.comparisons:
            rec = self.record(comp.quantity)
            samples = comparison_samples(ev, comp) if len(rec.samples) < MAX_SAMPLES else ()
            if rec.observe(comp.error, comp.k, passed=comp.passed,
                           message=comp.detail or f"error {comp.error:.3g} > {comp.k:g}",
                           counterexample=example, samples=samples, category=comp.category,
                           practical_error=comp.practical_error, where=comp.worst_index):
                from ..diagnose import diagnose

                found = diagnose(ev, comp, check=rec.check, memo=memo)
                rec.defects, rec.shape, rec.evidence = found.defects, found.shape, found.evidence

    def raised(self, quantity: str, exc: BaseException, example: Counterexample | None) -> None:
        self.record(quantity).raised(exc, example)

    def finish(self, duration: float) -> list[Record]:
        out = list(self.records.values())
        for rec in out:
            rec.duration_s = duration / max(len(out), 1)
            rec.coverage = dict(self.coverage)
        return out
