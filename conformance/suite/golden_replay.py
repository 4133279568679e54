"""The candidate over the golden fixtures of its dtype, mode and profile,
against the stored oracle outputs (no oracle call)."""

from __future__ import annotations

from .. import golden
from ..drivers import get_driver
from ..evaluate import Evaluation, compare
from .oracle_checks import EMBED_TOKENS
from .records import Counterexample, Tally
from .registry import CheckDef, Context

_CACHE: dict = {}


def _cases():
    directory = golden.default_dir()
    key = str(directory)
    if key not in _CACHE:
        _CACHE[key] = golden.load(directory)[1]
    return _CACHE[key]


def replay(ctx: Context, tally: Tally) -> None:
    dtype, mode = tally.dtype, tally.loss_agg_mode
    try:
        cases = _cases()
    except golden.GoldenError as exc:
        tally.record("fixtures").skip(str(exc))
        return
    info = ctx.candidate.info
    driver = get_driver(info.framework)
    for case in cases:
        opts = case.options
        if (case.meta["dtype"] != dtype or opts.loss_agg_mode != mode
                or case.meta["options"]["profile"] != info.profile
                or (info.requires_tau_order and opts.tau_pos > opts.tau_neg)):
            continue
        example = Counterexample(case.batch if case.batch.logprob.size <= EMBED_TOKENS else None, opts, dtype, None,
                                 f"golden:{case.id}")
        try:
            out = driver.call(ctx.candidate, case.batch, dtype, ctx.device, opts)
        except Exception as exc:
            tally.raised("call", exc, example)
            break
        ref = golden.reference(case)
        tally.add(Evaluation(out, ref, compare(ctx.candidate, out, ref), opts, None, info.profile), example)
    if not tally.records:
        tally.record("fixtures").skip(f"no golden case for {dtype}, {mode}, profile {info.profile}")


CHECKS: tuple[CheckDef, ...] = (
    CheckDef("golden.replay", "golden", "the golden fixtures (stored oracle outputs)", True, replay),
)
