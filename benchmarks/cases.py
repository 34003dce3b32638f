"""What is measured: the cases (variant, batch, mode, resolution), the rows of a run, and the run settings.

A row is one (case, contender) pair and runs in its own worker process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from contenders import CONTENDERS, INFER, TRAIN, Contender

MODELS = ("regnetx_004", "regnety_040")
INFER_BATCHES = (1, 8)
TRAIN_BATCH = 8
SIZE = 224

# The models of --quick's training rows (full mode trains every model): the small one, to stay within 5 minutes.
QUICK_TRAIN_MODELS = ("regnetx_004",)
# --quick skips contenders whose baseline cannot build a block type (HF Flax has no X variants); full mode runs
# them so the table says why they are unavailable.
QUICK_SKIP = {("rz-flax", "x"), ("hf-flax-jit", "x")}


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


def block_of(model: str) -> str:
    """'x' or 'y' from the registry (pure Python; no framework import)."""
    import regnet_zoo as rz

    return rz.get_variant(model).block


def cases(quick: bool, models=MODELS) -> list[Case]:
    out = [Case(m, b, INFER) for m in models for b in INFER_BATCHES]
    out += [Case(m, TRAIN_BATCH, TRAIN) for m in models if not quick or m in QUICK_TRAIN_MODELS]
    return out


def rows(quick: bool, models=MODELS, with_bf16: bool = False) -> list[tuple[Case, Contender]]:
    """Every (case, contender) of a run, in a stable order: by case, then as listed in ``CONTENDERS``.

    ``with_bf16``: --quick also runs the bf16 path (its target applies: a CPU with AMX, or a GPU)."""
    out = []
    for case in cases(quick, models):
        block = block_of(case.model)
        for c in CONTENDERS:
            if case.mode not in c.modes:
                continue
            in_quick = case.mode in c.quick or (with_bf16 and c.name == "rz-torch-bf16")
            if quick and (not in_quick or (c.name, block) in QUICK_SKIP):
                continue
            out.append((case, c))
    return out
