"""Profiles and run defaults, as data: how much the suites run and what
the benchmarks measure.  Imports nothing heavy, so that the command line can
build its help from it."""

from __future__ import annotations

from dataclasses import dataclass

#: default deadline of one check group (or pytest item) when isolated, in seconds
DEFAULT_GROUP_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class SuiteProfile:
    name: str
    description: str
    max_examples: int  # hypothesis examples per random unit
    max_rows: int
    max_cols: int
    invariant_batches: int  # batches per invariant unit
    targeted: bool  # hypothesis target() on the error, to hunt worst cases
    throughput: str | None = None  # the bench profile of run's throughput section (None: none)
    dp_world_size: int = 2  # ranks of the distributed.* checks


SUITE_PROFILES = {
    p.name: p
    for p in (
        SuiteProfile("quick", "seconds, for pre-commit hooks", 8, 4, 24, 1, False),
        SuiteProfile("default", "the CI profile", 40, 6, 48, 2, False, "quick"),
        SuiteProfile("thorough", "many examples, hypothesis target() on the error", 400, 8, 256, 4, True, "default",
                     dp_world_size=4),
    )
}


@dataclass(frozen=True)
class BenchProfile:
    """How much to measure.

    Attributes:
        shapes: (B, T) batch shapes.
        rounds: timed calls per contender and shape (interleaved).
        warmup: untimed calls after the first (compiling) one.
        fresh_bytes: input sets rotate until they span at least this many
            bytes (so large shapes do not run from cache), between
            ``min_sets`` and ``max_sets`` sets.
    """

    shapes: tuple[tuple[int, int], ...]
    rounds: int
    warmup: int = 3
    fresh_bytes: int = 64 << 20
    min_sets: int = 2
    max_sets: int = 8


BENCH_PROFILES = {
    "quick": BenchProfile(shapes=((8, 1024), (64, 4096)), rounds=15),
    "default": BenchProfile(
        shapes=((8, 1024), (16, 2048), (32, 4096), (64, 4096), (64, 8192), (64, 16384)), rounds=25),
}

#: a timing is *noisy* when its interquartile range exceeds this fraction of
#: its median; a throughput row is noisy when the timing of its candidate, or of
#: a contender one of its ratios uses (the copy, the baseline), is
NOISY_SPREAD = 0.25
