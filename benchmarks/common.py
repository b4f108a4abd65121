"""Pieces the benchmark scripts share: the environment header and a small model."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from tradinglib.data import load_bars
from tradinglib.exceptions import ModelError

MODEL_SOURCE = "googl-daily"


def print_environment(*packages: str) -> None:
    """Versions (python, torch, stable-baselines3, numpy and ``packages``), CPUs, threads."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    names = ("stable-baselines3", *packages)
    print(f"python {platform.python_version()}  torch {torch.__version__}  "
          + "  ".join(f"{name} {version(name)}" for name in names)
          + f"  numpy {np.__version__}")
    print(f"CPUs: {os.cpu_count()} (usable by this process: {affinity})  "
          f"torch threads: {torch.get_num_threads()} (torch.set_num_threads(1), as training)")


def train_small_model(out: Path, steps: int) -> Path:
    """A PPO model trained on built-in GOOGL daily bars (seed 0) into ``out``."""
    from tradinglib.train import train_model

    started = time.perf_counter()
    train_model(load_bars(MODEL_SOURCE), source=MODEL_SOURCE, out=out, steps=steps, seed=0,
                progress=False)
    print(f"trained PPO for {steps} steps (seed 0) on {MODEL_SOURCE} in "
          f"{time.perf_counter() - started:.1f}s: {out}")
    return out


def run_on_model(model: Path | None, steps: int, run: Callable[[Path], int], *,
                 errors: tuple[type[Exception], ...] = (ModelError,)) -> int:
    """``run(model)``, or ``run`` on a model trained for ``steps`` steps into a temporary
    folder when ``model`` is None; prints the total time and returns ``run``'s exit code.
    An exception of ``errors`` is printed as ``ERROR: ...`` and gives exit code 2."""
    started = time.perf_counter()
    try:
        if model is not None:
            code = run(model)
        else:
            with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
                code = run(train_small_model(Path(tmp) / "bench.zip", steps))
    except errors as exc:
        print(f"ERROR: {exc}")
        return 2
    print(f"total time {time.perf_counter() - started:.1f}s")
    return code
