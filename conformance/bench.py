"""Throughput: forward + backward of the full loss against the memory-bandwidth limit.

SAPO is elementwise work plus row reductions, so it is memory-bound: the
honest yardstick is how long the hardware needs to move the bytes the loss
cannot avoid -- read logprob, old_logprob, advantages and the mask, write the
gradient.  Each measurement therefore times, in the same run, interleaved
round by round so that machine noise hits all of them alike:

* the candidate (its driver's ``run``: forward, backward, synchronised;
  NumPy <-> framework conversion happens before, in ``prepare``);
* the *copy roofline*: a plain copy moving exactly those minimum bytes in the
  candidate's framework, on its device;
* the ``torch-eager`` built-in, as a speedup baseline.

Fresh inputs: each contender rotates over several independently drawn input
sets, enough to overflow the caches at large shapes, so no call reuses the
previous call's tensors.  The first call is timed separately (it includes
compilation).  Guards in the spirit of KernelBench: inputs must be unmodified,
the outputs of two different input sets must each match the oracle (a kernel
that caches results across calls fails this), and a candidate that moves its
minimum bytes faster than a plain copy is flagged as implausible.

Timing is ``time.perf_counter`` around a synchronised call on the CPU and
CUDA events on a GPU (the driver's ``timed_run``).  Every timing is reported
as its median with its quartiles and interquartile range (IQR).  A ratio of
two timings (roofline fraction, speedup) is the ratio of their medians, and
never comes alone: its range pairs the quartiles of the same run
(:func:`ratio_range`).  A row whose candidate, copy or baseline spreads wider
than :data:`NOISY_SPREAD` is marked noisy (:func:`wide_spread`), and
``diff --fail-slower`` does not judge it.  The regression gate for kernel CI
is pytest-benchmark (see ``pytest --sapo-bench`` in the README).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .candidate import Batch, CallOptions, Candidate, CandidateError
from .drivers import get_driver
from .profiles import BENCH_PROFILES, NOISY_SPREAD, BenchProfile

#: the candidate used as the speedup baseline
BASELINE = "torch-eager"


#: a candidate faster than this multiple of the copy roofline is implausible
IMPLAUSIBLE_ROOFLINE_FRACTION = 1.25

#: what the inputs look like: log-ratios near 0, ragged rows, GRPO-style
#: per-row advantages given per token (verl's layout)
LOG_RATIO_SCALE = 0.1


def parse_shape(text: str) -> tuple[int, int]:
    """``"64x4096"`` -> (64, 4096); ValueError naming the problem otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"shape {text!r} is not BxT (e.g. 64x4096)")
    B, T = (int(p) for p in parts)
    if B < 1 or T < 1:
        raise ValueError(f"shape {text!r}: B and T must be at least 1")
    return B, T


def make_batch(B: int, T: int, seed: int) -> Batch:
    """One realistic input set (float64), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    old = -0.5 - np.abs(rng.normal(1.0, 1.0, (B, T)))
    logprob = np.minimum(old + rng.normal(0.0, LOG_RATIO_SCALE, (B, T)), 0.0)  # log-probabilities are <= 0
    adv = np.repeat(rng.normal(0.0, 1.0, (B, 1)), T, axis=1)
    lengths = rng.integers(max(T // 2, 1), T + 1, (B, 1))
    mask = np.arange(T)[None, :] < lengths
    return Batch(logprob, old, adv, mask)


def timing_unavailable(candidate: Candidate, device: str) -> str | None:
    """Why timing ``candidate`` on ``device`` would be meaningless, or None."""
    if "triton" in candidate.requires and os.environ.get("TRITON_INTERPRET") == "1":
        return ("correctness only: Triton runs under its CPU interpreter here (TRITON_INTERPRET=1), "
                "which says nothing about kernel speed; benchmark it on a GPU")
    return None


def minimum_bytes(candidate: Candidate, B: int, T: int, dtype: str, layout: str) -> int:
    """Bytes the loss cannot avoid moving: read the four inputs, write the gradient."""
    item = np.dtype("float16").itemsize if dtype == "bfloat16" else np.dtype(dtype).itemsize
    mask_item = 1 if candidate.info.mask_kind == "bool" else item
    adv = B * T if layout == "BT" else B
    return (3 * B * T + adv) * item + B * T * mask_item


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


#: the host clock's resolution: the shortest time a call can be said to take
_CLOCK_TICK = max(time.get_clock_info("perf_counter").resolution, 1e-9)


@dataclass
class Timing:
    """Seconds per call of one contender at one shape."""

    samples: list[float] = field(default_factory=list)
    first_call_s: float | None = None

    def _sorted(self) -> list[float]:
        # a call faster than the clock can resolve reads as 0 s: count it as
        # one tick, so that every rate stays finite
        return sorted(max(v, _CLOCK_TICK) for v in self.samples)

    def as_dict(self) -> dict:
        s = self._sorted()
        # "inclusive": quartiles within [min, max]; the default ("exclusive")
        # extrapolates beyond them for a few samples, even below 0
        q1, q3 = (statistics.quantiles(s, n=4, method="inclusive")[0::2] if len(s) >= 2 else (s[0], s[0]))
        return {"median_s": statistics.median(s), "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1, "min_s": s[0],
                "rounds": len(s), "first_call_s": self.first_call_s}

    @property
    def median(self) -> float:
        return statistics.median(self._sorted())


# The spread of timings.  Each function takes timings as ``Timing.as_dict``
# gives them (and as reports store them), so reports written before the
# fields they fill existed read the same way.


def spread(timing: dict) -> float:
    """How widely a timing's rounds scatter: its IQR over its median."""
    return (timing["q3_s"] - timing["q1_s"]) / timing["median_s"]


def ratio_range(num: dict, den: dict) -> list[float]:
    """[low, high] of the ratio ``num / den`` of two timings of one run: the
    quartiles paired as unfavourably and as favourably as they go (q1/q3 and
    q3/q1).  The ratio of the medians always lies within."""
    return [num["q1_s"] / den["q3_s"], num["q3_s"] / den["q1_s"]]


def _contenders(row: dict) -> dict[str, dict]:
    """The timings a timed row's ratios use, by name (the baseline only when
    it is not the candidate itself)."""
    out = {"candidate": row["candidate"], "copy": row["copy"]}
    if row.get("baseline") and row["baseline"] != row["candidate"]:
        out["baseline"] = row["baseline"]
    return out


def wide(timings: dict[str, dict]) -> dict[str, float]:
    """The timings (by name) whose spread exceeds NOISY_SPREAD, with that
    spread: the one place the noisy rule is applied."""
    return {name: spread(t) for name, t in timings.items() if spread(t) > NOISY_SPREAD}


def wide_spread(row: dict) -> dict[str, float]:
    """The contenders of a timed row that spread too widely: the row is noisy
    when this is not empty."""
    return wide(_contenders(row))


def is_noisy(row: dict) -> bool:
    """Whether a timed row is marked noisy (a row of a report written before
    the mark existed: judged from its quartiles by the same rule)."""
    return bool(row["noisy"]) if "noisy" in row else bool(wide_spread(row))


def ratio_ranges(row: dict) -> dict[str, list[float] | None]:
    """``roofline_range`` and ``speedup_range`` of a timed row, from its
    quartiles (speedup: None without a baseline, [1, 1] for the baseline
    itself)."""
    c = _contenders(row)
    speedup = None
    if row.get("baseline"):
        speedup = ratio_range(c["baseline"], c["candidate"]) if "baseline" in c else [1.0, 1.0]
    return {"roofline_range": ratio_range(c["copy"], c["candidate"]), "speedup_range": speedup}


def row_ratios(row: dict) -> dict[str, tuple[float, float, float] | None]:
    """A timed row's ratios as (value, low, high): "roofline" (the copy's time
    over the candidate's) and "speedup" (the baseline's over the candidate's;
    None without one).  Ranges a report lacks are computed as measure() does."""
    ranges = ratio_ranges(row)
    ranges.update({k: row[k] for k in ranges if row.get(k)})
    sp = row.get("speedup_vs_baseline")
    return {"roofline": (row["roofline_fraction"], *ranges["roofline_range"]),
            "speedup": None if sp is None or ranges["speedup_range"] is None else (sp, *ranges["speedup_range"])}


def noisy_rule(subjects: str) -> str:
    """The noisy rule in words, for reports and the command line."""
    return f"NOISY: the IQR of {subjects} exceeds {100 * NOISY_SPREAD:.0f} % of its median"


# ---------------------------------------------------------------------------
# contenders
# ---------------------------------------------------------------------------


class _Contender:
    """Something timed in the rotation: prepared once, called per round."""

    name = ""

    def call(self, i: int) -> float:
        raise NotImplementedError


class TimedCall(_Contender):
    """A candidate at one shape and dtype, its input sets prepared (converted
    and on the device) so that only the kernel is timed: :meth:`call` times
    set ``i`` with the driver's timer, :meth:`run` only runs it (for an
    outside timer such as pytest-benchmark), :meth:`check_outputs` checks
    the last outputs against the oracle afterwards."""

    def __init__(self, candidate: Candidate, batches: list[Batch], dtype: str, device: str, layout: str,
                 options: CallOptions = CallOptions(), nbytes: int = 0):
        self.name = candidate.name
        self.layout, self.bytes, self.dtype, self.device = layout, nbytes, dtype, device
        self.candidate = candidate
        self.driver = get_driver(candidate.info.framework)
        self.options = options
        self.prepared = [self.driver.prepare(candidate, b, dtype, device, layout) for b in batches]
        self.last_raw: dict[int, object] = {}

    @property
    def sets(self) -> int:
        return len(self.prepared)

    def call(self, i: int) -> float:
        k = i % len(self.prepared)
        raw, seconds = self.driver.timed_run(self.prepared[k], self.options)
        self.last_raw[k] = raw
        return seconds

    def run(self, i: int) -> None:
        k = i % len(self.prepared)
        self.last_raw[k] = self.driver.run(self.prepared[k], self.options)

    def check_outputs(self) -> list[str]:
        """Problems: modified inputs, or outputs that do not match the oracle
        for their own input set (cached or wrong results)."""
        from .evaluate import compare, reference_for

        problems = []
        for k in sorted(self.last_raw)[:2]:
            prep = self.prepared[k]
            try:
                out = self.driver.collect(prep, self.last_raw[k])
            except CandidateError as exc:
                problems.append(f"input set {k}: {exc}")
                continue
            ref = reference_for(self.candidate, out.inputs, self.options, prep.dtype)
            for c in compare(self.candidate, out, ref):
                if not c.passed:
                    problems.append(f"input set {k}: {c.describe()}")
        return problems


class _CopyContender(_Contender):
    name = "copy"

    def __init__(self, framework: str, nbytes: int, device: str, sets: int):
        self.driver = get_driver(framework)
        self.copy = self.driver.make_copy(max(nbytes // 2, 4), device, sets)

    def call(self, i: int) -> float:
        return self.copy(i)


# ---------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------


def _sets_for(nbytes: int, profile: BenchProfile) -> int:
    return int(min(profile.max_sets, max(profile.min_sets, math.ceil(profile.fresh_bytes / max(nbytes, 1)))))


def _layout_for(candidate: Candidate) -> str:
    shapes = candidate.info.advantage_shapes
    return "BT" if "BT" in shapes else shapes[0]


def timed_call(candidate: Candidate, B: int, T: int, dtype: str, *, device: str = "cpu",
               profile: BenchProfile = BENCH_PROFILES["default"], seed: int = 0, layout: str | None = None,
               options: CallOptions = CallOptions()) -> TimedCall:
    """The candidate at B x T in ``dtype``, with as many fresh input sets as
    the profile asks for (enough that caches do not hold them)."""
    layout = layout or _layout_for(candidate)
    nbytes = minimum_bytes(candidate, B, T, dtype, layout)
    batches = [make_batch(B, T, seed * 1_000_003 + 7919 * k + 1) for k in range(_sets_for(nbytes, profile))]
    return TimedCall(candidate, batches, dtype, device, layout, options, nbytes)


def _baseline_for(candidate: Candidate, dtype: str, device: str) -> tuple[Candidate | None, str]:
    """The torch-eager built-in, if it can run this dtype on this device."""
    if candidate.name == BASELINE:
        return candidate, ""
    from .loading import load_candidate

    try:
        base = load_candidate(BASELINE)
    except CandidateError as exc:
        return None, str(exc)
    avail = base.availability(device)
    if not avail:
        return None, f"{BASELINE} cannot run on {device}: {avail.reason}"
    if dtype not in base.info.dtypes:
        return None, f"{BASELINE} does not support {dtype}"
    return base, ""


def fill_timings(row: dict, cand: Timing, copy: Timing, baseline: Timing | None) -> dict:
    """Complete a row that has its ``tokens`` and ``bytes`` from the timings of
    its contenders: each timing's summary, the rates, the ratios with their
    ranges, and the noisy mark.  ``baseline`` is ``cand`` itself when the
    candidate is the baseline, None when there is none."""
    row["candidate"] = cand.as_dict()
    row["copy"] = copy.as_dict()
    row["tokens_per_s"] = row["tokens"] / cand.median
    row["bytes_per_s"] = row["bytes"] / cand.median
    row["roofline_bytes_per_s"] = row["bytes"] / copy.median
    row["roofline_fraction"] = copy.median / cand.median
    if baseline is None:
        row["baseline"], row["speedup_vs_baseline"] = None, None
    elif baseline is cand:
        row["baseline"], row["speedup_vs_baseline"] = row["candidate"], 1.0
    else:
        row["baseline"], row["speedup_vs_baseline"] = baseline.as_dict(), baseline.median / cand.median
    row.update(ratio_ranges(row))
    row["noisy"] = bool(wide_spread(row))
    return row


def measure(candidate: Candidate, B: int, T: int, dtype: str, *, device: str = "cpu",
            profile: BenchProfile = BENCH_PROFILES["default"], options: CallOptions = CallOptions(),
            seed: int = 0, baseline: bool = True) -> dict:
    """One row of the throughput table: the candidate, the copy roofline and
    the torch-eager baseline at one shape and dtype."""
    tokens = B * T
    row = {"shape": [B, T], "tokens": tokens, "dtype": dtype, "device": device, "status": "ok", "reason": "",
           "flags": []}
    why = timing_unavailable(candidate, device)
    if why:
        row.update(status="correctness-only", reason=why)
        return row
    timed = timed_call(candidate, B, T, dtype, device=device, profile=profile, seed=seed, options=options)
    nbytes, sets = timed.bytes, timed.sets
    row.update(bytes=nbytes, layout=timed.layout, input_sets=sets)
    contenders: list[_Contender] = [timed, _CopyContender(candidate.info.framework, nbytes, device, sets)]
    base_reason = "not requested"
    if baseline:
        base, base_reason = _baseline_for(candidate, dtype, device)
        if base is not None and base is not candidate:
            contenders.append(timed_call(base, B, T, dtype, device=device, profile=profile, seed=seed,
                                         options=options))
    timings = {c.name: Timing() for c in contenders}
    for c in contenders:  # cold call (compilation), then warm-up
        timings[c.name].first_call_s = c.call(0)
        for i in range(profile.warmup):
            c.call(i + 1)
    for r in range(profile.rounds):
        for c in contenders:
            timings[c.name].samples.append(c.call(r))
    cand = timings[candidate.name]
    base = cand if candidate.name == BASELINE else timings.get(BASELINE)
    fill_timings(row, cand, timings["copy"], base)
    if base is None:
        row["baseline_reason"] = base_reason
    row["compile_s"] = max(cand.first_call_s - cand.median, 0.0)
    # Proven problems (wrong or stale outputs, modified inputs) come first, so
    # that the row's reason names them rather than the timing heuristic that
    # usually fires alongside them.
    row["flags"].extend(contenders[0].check_outputs()[:5])
    if row["roofline_fraction"] > IMPLAUSIBLE_ROOFLINE_FRACTION:
        row["flags"].append(f"implausibly fast: {row['roofline_fraction']:.2f}x the copy roofline "
                            "(results cached, work skipped, or an asynchronous call not waited for?)")
    if row["flags"]:
        row["status"] = "invalid"
        row["reason"] = row["flags"][0]
    return row


class BenchUnavailable(CandidateError):
    """The candidate cannot run on the device asked for."""


def empty_section(device: str, error: str) -> dict:
    """A throughput section with no rows, saying why."""
    return {"baseline": BASELINE, "device": device, "rounds": 0, "warmup": 0, "timer": "", "rows": [],
            "error": error}


def bench(candidate: Candidate, *, shapes, dtypes=None, device: str = "cpu",
          profile: BenchProfile = BENCH_PROFILES["default"], seed: int = 0, baseline: bool = True,
          progress: Callable[[dict], None] | None = None) -> dict:
    """The throughput section: one row per shape x dtype."""
    info = candidate.info
    dtypes = tuple(dtypes) if dtypes else tuple(d for d in info.dtypes if d != "float64")
    bad = [d for d in dtypes if d not in info.dtypes]
    if bad:
        raise CandidateError(f"candidate {info.name!r} does not claim dtype {', '.join(bad)} "
                             f"(it claims {', '.join(info.dtypes)})")
    avail = candidate.availability(device)
    if not avail:
        raise BenchUnavailable(f"{info.name}: cannot run on {device}: {avail.reason}")
    rows = []
    for dtype in dtypes:
        for B, T in shapes:
            try:
                row = measure(candidate, B, T, dtype, device=device, profile=profile, seed=seed,
                              baseline=baseline)
            except Exception as exc:  # the candidate (or its framework) failed: record, go on
                row = {"shape": [B, T], "tokens": B * T, "dtype": dtype, "device": device, "status": "error",
                       "reason": f"{type(exc).__name__}: {exc}".splitlines()[0][:500], "flags": []}
            rows.append(row)
            if progress:
                progress(row)
    return {"baseline": BASELINE, "device": device, "rounds": profile.rounds, "warmup": profile.warmup,
            "timer": get_driver(info.framework).timer_name(device), "rows": rows}


# ---------------------------------------------------------------------------
# the oracle itself
# ---------------------------------------------------------------------------


def oracle_speed(B: int = 64, T: int = 4096, *, rounds: int = 40, seed: int = 0,
                 loss_agg_mode: str = "seq-mean-token-mean") -> dict:
    """The oracle's loss + gradient, its default (fast) form and its
    reproducible form, against one ``np.exp`` pass over a float64 array of
    the same shape, interleaved round by round: the oracle is in every
    check's denominator, and exp is the unit of work it cannot avoid.

    Returns the shape, rounds, ``timings`` by contender ("exp", "oracle",
    "reproducible") and ``ratios`` of each oracle to exp (value, range,
    noisy, and ``wide``: the timings that made it noisy)."""
    import sapo_ref

    b = make_batch(B, T, seed)
    adv = np.ascontiguousarray(b.advantages[:, 0])
    x = b.logprob - b.old_logprob

    def oracle(**kwargs):
        return lambda: sapo_ref.sapo_loss(b.logprob, b.old_logprob, adv, b.mask, loss_agg_mode=loss_agg_mode,
                                          **kwargs).grad

    calls = {"exp": lambda: np.exp(x), "oracle": oracle(), "reproducible": oracle(reproducible=True)}
    for call in calls.values():  # warm-up
        call()
    timings = {name: Timing() for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            timings[name].samples.append(time.perf_counter() - start)
    t = {name: timing.as_dict() for name, timing in timings.items()}
    return {"shape": [B, T], "loss_agg_mode": loss_agg_mode, "rounds": rounds, "timings": t,
            "ratios": oracle_ratios(t)}


def oracle_ratios(timings: dict[str, dict]) -> dict[str, dict]:
    """Each oracle's time over the np.exp pass's ("exp"): the ratio of
    medians as ``value``, its ``range``, ``noisy``, and ``wide``: which of the
    two timings spread too widely."""
    exp = timings["exp"]
    out = {}
    for name, t in timings.items():
        if name != "exp":
            noisy = wide({name: t, "exp": exp})
            out[name] = {"value": t["median_s"] / exp["median_s"], "range": ratio_range(t, exp),
                         "noisy": bool(noisy), "wide": noisy}
    return out
