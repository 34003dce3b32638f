"""What is measured: the cases (variant, batch, mode, resolution), the rows of a run, and the run settings.

A row is one (case, contender) pair and runs in its own worker process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from contenders import CONTENDERS, INFER, REFERENCE_CONV, REFERENCE_MODEL, TRAIN, Contender

MODELS = ("regnetx_004", "regnety_040")
INFER_BATCHES = (1, 8)
QUICK_INFER_BATCHES = (8,)  # the batch the targets are set at
TRAIN_BATCH = 8
SIZE = 224

# The models of --quick's training rows (full mode trains every model): the small one, to stay within 5 minutes.
QUICK_TRAIN_MODELS = ("regnetx_004",)


@dataclass(frozen=True)
class Case:
    model: str
    batch: int
    mode: str  # infer | train
    size: int = SIZE

    @property
    def key(self) -> str:
        return f"{self.model} {self.mode} b{self.batch} {self.size}px"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Settings:
    """How long and how carefully each row is timed."""

    warmup: int  # untimed calls after the first (compiling) call
    repeats: int  # at least this many timed calls ...
    min_window: float  # ... and at least this many seconds of timed calls (the idle check needs ~1 s)
    max_iters: int  # ... but no more calls than this,
    max_window: float  # ... and once MIN_SLOW_REPEATS calls took this long, stop (training steps of seconds each)
    retries: int  # re-measurements of a row whose window was noisy
    quiet_wait: float  # seconds to wait for the machine to calm down before each attempt
    patience: float  # run-wide seconds for waiting and re-measuring; once spent, rows are only flagged noisy
    timeout: float  # seconds a worker may take before it is killed (reported as an error row)
    cli_repeats: int  # fresh interpreters for the import / CLI timings

    def as_dict(self) -> dict:
        return asdict(self)


MIN_SLOW_REPEATS = 3
QUICK = Settings(warmup=2, repeats=5, min_window=1.0, max_iters=300, max_window=15.0, retries=1, quiet_wait=15.0,
                 patience=90.0, timeout=240.0, cli_repeats=5)
FULL = Settings(warmup=5, repeats=20, min_window=3.0, max_iters=2000, max_window=60.0, retries=3, quiet_wait=120.0,
                patience=3600.0, timeout=1800.0, cli_repeats=15)


REFERENCE_CASE = Case(REFERENCE_MODEL, REFERENCE_CONV["batch"], INFER, REFERENCE_CONV["size"])


def gflop(case: Case) -> float:
    """Nominal GFLOP of one call (2 per multiply-add of the unfolded network, from the registry's complexity
    count; a training step counts 3 forward passes: forward, and backward's two products)."""
    if case.model == REFERENCE_MODEL:
        c = REFERENCE_CONV
        return 2 * c["batch"] * c["size"] ** 2 * c["channels"] ** 2 * 9 / 1e9
    import regnet_zoo as rz

    return 2 * rz.plan(case.model).flops(case.size) * case.batch * (3 if case.mode == TRAIN else 1) / 1e9


def block_of(model: str) -> str:
    """'x' or 'y' from the registry (pure Python; no framework import)."""
    import regnet_zoo as rz

    return rz.get_variant(model).block


def cases(quick: bool, models=MODELS) -> list[Case]:
    out = [Case(m, b, INFER) for m in models for b in (QUICK_INFER_BATCHES if quick else INFER_BATCHES)]
    out += [Case(m, TRAIN_BATCH, TRAIN) for m in models if not quick or m in QUICK_TRAIN_MODELS]
    return out


def rows(quick: bool, models=MODELS) -> list[tuple[Case, Contender]]:
    """Every (case, contender) of a run, in a stable order: the roofline references first, then by case, as
    listed in ``CONTENDERS``."""
    out = [(REFERENCE_CASE, c) for c in CONTENDERS if c.reference]
    for case in cases(quick, models):
        block = block_of(case.model)
        for c in CONTENDERS:
            if c.reference or case.mode not in c.modes or (quick and case.mode not in c.quick):
                continue
            if quick and block not in c.blocks:
                continue
            out.append((case, c))
    return out
