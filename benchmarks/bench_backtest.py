"""Benchmark of ``run_backtest`` against the loop a user writes today, in one process.

Run::

    .venv/bin/python benchmarks/bench_backtest.py [--bars 200000] [--baseline-bars 5000]
        [--check-bars 20000] [--rounds 3] [--model PATH] [--steps N] [--profile]

Bars: ``--bars`` hourly bars made from REAL data, offline. The built-in EURUSD hourly
ask bars of 2017 (``load_bars("eurusd-hourly")``, 6,225 bars) are turned into per-bar
relative moves (log return of close vs the previous close; open, high, low and volume
as ratios to the bar's own close), and those moves are tiled end to end into one
continuous price path starting at the first real close, on a continuous hourly UTC index
from 2000-01-03 (weekend gaps of the source are not reproduced). OHLC stays consistent
(low <= open, close <= high) because the ratios are the real bar's. The tiles repeat the
year's drift, so the price trends upward over the whole path (printed below).

Model: without ``--model`` a small PPO is trained into a temporary directory
(``train_model`` on the built-in GOOGL daily bars, ``--steps`` steps, seed 0) and loaded
with ``LockedPolicy.load``; its backend is printed (the numpy fast path is expected).
Torch runs on one thread (``torch.set_num_threads(1)``), as training does.

What is measured:

1. Throughput, decisions per second (one decision per bar), with ``time.perf_counter``:
   (a) the baseline, the loop a user writes today: gym-anytrading's ``stocks-v0``
   (``gymnasium.make("stocks-v0", df=..., window_size=10, frame_bound=(10, N))`` on the
   same synthetic bars with the column names it expects), observation ->
   SB3 ``model.predict(obs, deterministic=True)`` -> ``env.step(action)``, for
   ``--baseline-bars`` bars. Its PPO is ``PPO("MlpPolicy", env)`` for that env's spaces,
   untrained: ``predict`` costs the same whatever the weights. (b) ours:
   ``run_backtest(bars, policy)`` on all ``--bars`` bars, the batched path (the default
   for a LockedPolicy), with the full decision path: features, observation validation,
   inference, risk guard, fills, accounting and the result tables and metrics. The two
   alternate (baseline, ours, baseline, ours, ... ``--rounds`` times) after one untimed
   warm-up of each, and the median of each is reported, so machine noise hits both. The
   headline is ours / baseline (target: at least 50x). A cheap breakdown times the
   ``Simulation`` set-up (market features and per-bar arrays), ``market_features`` and
   ``performance_metrics`` of the result's equity on their own (best of 3 each); the
   rest of the median is the decision loop and the result tables.
2. Equality: the per-bar reference path ``run_backtest(subset, policy, batched=False)``
   and the batched path on the same first ``--check-bars`` bars must give identical
   decisions (action, verdict, fallback, position), trades, equity and risk events
   (``pandas.testing``). The per-bar path's throughput is printed too.
3. Peak memory of the ``--bars`` backtest, in a fresh child process (this script with a
   hidden flag, started through ``sh`` so that it does not inherit this process's peak
   in ``ru_maxrss``), so that nothing done before pollutes it: peak RSS
   (``getrusage(RUSAGE_SELF).ru_maxrss``, KiB on Linux) after imports, bars and model
   load, and after the backtest (the absolute process peak); and, more precisely, the
   RSS just before the backtest and its high-water mark during it (``VmHWM``, reset
   first through ``/proc/self/clear_refs``): their difference is the backtest's own peak.
   The child then runs the backtest once more under ``tracemalloc`` for the peak of
   Python/numpy allocations made inside the call. The verdict (target: under 500 MB)
   uses the larger of the backtest's own RSS increment and the tracemalloc peak.
4. ``--profile`` (off by default, adds ~10 s): cProfile of one batched run, top functions
   by own time and by cumulative time.

How to read it: absolute times drift on a shared machine; the ratio within one run is the
figure to compare. The batched path predicts bars ahead in one call and re-predicts after
every fill (the account features change), so its speed depends on how often the model
trades: the action mix and fill count are printed next to it. The header prints numpy's
BLAS and its thread settings. A matrix product on several OpenBLAS threads waits
milliseconds for a busy core, so the numpy forward pass splits its products into row
blocks small enough for OpenBLAS to keep each on one thread: the setting should not
change our figure (compare a run under ``OPENBLAS_NUM_THREADS=1``).

Exit code: 0 whatever the ratio or memory figure (this is a measurement); 1 if the
batched and per-bar paths disagree (or the memory child fails); 2 if the data or the
model cannot be loaded.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from common import print_environment, run_on_model

from tradinglib.backtest import BacktestResult, run_backtest
from tradinglib.data import load_bars
from tradinglib.exceptions import DataError, ModelError
from tradinglib.execution import Simulation
from tradinglib.features import market_features
from tradinglib.inference import LockedPolicy
from tradinglib.metrics import performance_metrics

SOURCE_BARS = "eurusd-hourly"
START = "2000-01-03"
WINDOW = 10  # stocks-v0 window_size of the baseline
TARGET_RATIO = 50.0
TARGET_MB = 500.0
ISSUE_BASELINE = 2_800.0  # bars/s the issue quotes for the user's loop
WARMUP_BARS = 2_000  # untimed warm-up backtest before the timed rounds
PROFILE_TOP = 15
MEMORY_TAG = "MEMORY-JSON "
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
MIB = 1024.0 * 1024.0


# --- setup -------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=200_000,
                        help="synthetic hourly bars for our backtest (default 200000)")
    parser.add_argument("--baseline-bars", type=int, default=5_000,
                        help="bars the gym-anytrading + SB3 loop steps through (default 5000)")
    parser.add_argument("--check-bars", type=int, default=20_000,
                        help="first bars on which batched and per-bar paths are compared")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating timed rounds of baseline and ours (default 3)")
    parser.add_argument("--model", type=Path, default=None,
                        help="an SB3 zip with its card beside it (default: train one)")
    parser.add_argument("--steps", type=int, default=8192,
                        help="training steps of the model trained when --model is absent")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile one batched run and print the top functions")
    parser.add_argument("--memory-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bars < 1_000 or args.baseline_bars < 100 or args.check_bars < 1_000:
        parser.error("--bars and --check-bars must be >= 1000, --baseline-bars >= 100")
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be >= 1")
    args.check_bars = min(args.check_bars, args.bars)
    args.baseline_bars = min(args.baseline_bars, args.bars - WINDOW - 1)
    return args


def make_bars(n: int) -> pd.DataFrame:
    """``n`` hourly bars tiling the real EURUSD hourly bars' relative moves end to end.

    Bar i takes source bar k = 1 + i mod (len - 1): close_i = close_{i-1} * close_k /
    close_{k-1} (close_{-1} being the first real close), and open, high, low, volume =
    close_i times the source bar's ratio to its own close.
    """
    src = load_bars(SOURCE_BARS)
    close = src["close"].to_numpy()
    log_ret = np.diff(np.log(close))
    ratios = src[["open", "high", "low", "volume"]].to_numpy()[1:] / close[1:, None]
    k = np.arange(n) % len(log_ret)
    path = close[0] * np.exp(np.cumsum(log_ret[k]))
    bars = pd.DataFrame(
        {"open": path * ratios[k, 0], "high": path * ratios[k, 1], "low": path * ratios[k, 2],
         "close": path, "volume": path * ratios[k, 3]},
        index=pd.date_range(START, periods=n, freq="h", tz="UTC", name="time", unit="us"),
    )
    body_low = np.minimum(bars["open"], bars["close"])
    body_high = np.maximum(bars["open"], bars["close"])
    if not ((bars["low"] <= body_low) & (body_high <= bars["high"])).all():
        raise DataError("synthetic bars broke low <= open, close <= high")
    return bars


def print_blas() -> None:
    print(f"numpy BLAS: {blas_description()}; "
          + "  ".join(f"{name}={os.environ.get(name, 'unset')}" for name in BLAS_ENV)
          + " (unset: one BLAS thread per CPU)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average (1 min) at start: {load:.2f}")


def blas_description() -> str:
    """numpy's BLAS library and version, from its build configuration."""
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas['version']}"
    except (KeyError, TypeError, ValueError):
        return "unknown"


def print_bars(bars: pd.DataFrame) -> None:
    first, last = bars["close"].iloc[0], bars["close"].iloc[-1]
    print(f"bars: {len(bars):,} hourly bars, {bars.index[0]:%Y-%m-%d %H:%M} .. "
          f"{bars.index[-1]:%Y-%m-%d %H:%M} UTC, made from the real {SOURCE_BARS} bars "
          f"(EURUSD 1h ask, 2017, 6,225 bars): their per-bar log returns and open/high/low/"
          f"volume-to-close ratios tiled end to end into one continuous price path "
          f"(close {first:.4f} -> {last:.2f}); low <= open, close <= high checked")


# --- 1. throughput -----------------------------------------------------------------------

@dataclass
class Baseline:
    """The user's loop today: gym-anytrading stocks-v0 stepped with SB3 predict."""

    env: Any
    model: Any
    bars: int

    def run(self) -> float:
        """Step ``bars`` bars from a fresh reset; return the seconds taken."""
        obs, _ = self.env.reset(seed=0)
        predict, step = self.model.predict, self.env.step
        started = time.perf_counter()
        for _ in range(self.bars):
            action, _ = predict(obs, deterministic=True)
            obs, _, terminated, truncated, _ = step(action)
            if terminated or truncated:
                obs, _ = self.env.reset(seed=0)
        return time.perf_counter() - started


def make_baseline(bars: pd.DataFrame, n: int) -> Baseline:
    """stocks-v0 over the first ``n + WINDOW + 1`` bars (one episode of ``n`` steps)."""
    import gym_anytrading  # noqa: F401  (registers stocks-v0)
    import gymnasium
    from stable_baselines3 import PPO

    # gymnasium's passive env checker warns on every step that stocks-v0 returns
    # observations sharing memory (a view into its feature array); only that is silenced
    warnings.filterwarnings("ignore", message=r".*share an object.*", category=UserWarning,
                            module=r"gymnasium\.utils\.passive_env_checker")
    df = bars.iloc[:n + WINDOW + 1].rename(columns=str.capitalize)  # Open, High, ..., Volume
    env = gymnasium.make("stocks-v0", df=df, window_size=WINDOW, frame_bound=(WINDOW, len(df)))
    model = PPO("MlpPolicy", env, seed=0, device="cpu", verbose=0)
    return Baseline(env, model, n)


def time_ours(bars: pd.DataFrame, policy: LockedPolicy) -> tuple[float, BacktestResult]:
    started = time.perf_counter()
    result = run_backtest(bars, policy)
    return time.perf_counter() - started, result


def measure_throughput(baseline: Baseline, bars: pd.DataFrame, policy: LockedPolicy,
                       rounds: int) -> tuple[list[float], list[float], BacktestResult]:
    """Alternate baseline and ours ``rounds`` times after an untimed warm-up of each."""
    Baseline(baseline.env, baseline.model, min(baseline.bars, 500)).run()
    run_backtest(bars.iloc[:WARMUP_BARS], policy)
    base_s: list[float] = []
    ours_s: list[float] = []
    result: BacktestResult | None = None
    for r in range(rounds):
        base_s.append(baseline.run())
        print(f"   round {r + 1}: baseline {baseline.bars:,} bars in {base_s[-1]:.2f}s", end="",
              flush=True)
        seconds, result = time_ours(bars, policy)
        ours_s.append(seconds)
        print(f"; ours {len(result.decisions):,} decisions in {seconds:.2f}s", flush=True)
    assert result is not None
    return base_s, ours_s, result


@dataclass
class Breakdown:
    """Seconds of parts of one backtest, each timed on its own (best of 3)."""

    setup: float  # Simulation(bars): market features and per-bar arrays
    features: float  # market_features(bars), part of the set-up
    metrics: float  # performance_metrics(equity), part of the result tables


def breakdown_seconds(bars: pd.DataFrame, result: BacktestResult) -> Breakdown:
    """Time the set-up, its market features and the metrics apart from the rest."""

    def best(call: Any) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        return min(times)

    return Breakdown(setup=best(lambda: Simulation(bars)),
                     features=best(lambda: market_features(bars)),
                     metrics=best(lambda: performance_metrics(result.equity)))


def print_throughput(baseline: Baseline, base_s: list[float], ours_s: list[float],
                     result: BacktestResult, parts: Breakdown) -> None:
    base_rate = baseline.bars / statistics.median(base_s)
    n = len(result.decisions)
    ours_rate = n / statistics.median(ours_s)
    ratio = ours_rate / base_rate
    print(f"\n1. Throughput, decisions (bars) per second, median of {len(base_s)} alternating "
          "rounds")
    print(f"   {'path':<62}{'bars':>9}{'median s':>10}{'bars/s':>11}")
    print(f"   {'(a) baseline: stocks-v0 env.step + SB3 model.predict':<62}"
          f"{baseline.bars:>9,}{statistics.median(base_s):>10.3f}{base_rate:>11,.0f}")
    print(f"   {'(b) ours: run_backtest, batched, full decision path':<62}"
          f"{n:>9,}{statistics.median(ours_s):>10.3f}{ours_rate:>11,.0f}")
    print("   baseline model: PPO('MlpPolicy', env) untrained, for stocks-v0's Box(10, 2) / "
          "Discrete(2) spaces (predict costs the same trained or not)")
    print(f"   per-round bars/s: baseline {', '.join(f'{baseline.bars / s:,.0f}' for s in base_s)};"
          f" ours {', '.join(f'{n / s:,.0f}' for s in ours_s)}")
    actions = result.decisions["action"].value_counts()
    mix = ", ".join(f"{name} {int(actions.get(name, 0)):,}" for name in ("HOLD", "BUY", "SELL"))
    m = result.metrics
    rejected = sum(m["rejections"].values())
    print(f"   ours: {mix}; trades (fills) {m['trades']:,} ({1000 * m['trades'] / n:.0f} per "
          f"1000 bars), rejected orders {rejected:,} {m['rejections'] or ''}, "
          f"HOLD fallbacks {m['hold_fallbacks']}")
    median = statistics.median(ours_s)
    rest = median - parts.setup - parts.metrics
    print(f"   ours, breakdown: of {median:.3f}s, Simulation set-up {parts.setup:.3f}s "
          f"(market_features {parts.features:.3f}s), performance_metrics {parts.metrics:.3f}s, "
          f"the rest (decision loop, result tables) {rest:.3f}s")
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"   ratio ours / baseline = {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x): {verdict}")
    print(f"   (against the issue's quoted {ISSUE_BASELINE:,.0f} bars/s for the baseline: "
          f"{ours_rate / ISSUE_BASELINE:.1f}x)")


# --- 2. equality -------------------------------------------------------------------------

@dataclass
class Equality:
    """Both paths on the same bars: their times and what differed."""

    bars: int
    decisions: int
    per_bar_s: float
    batched_s: float
    trades: tuple[int, int]
    differing: int
    failures: list[str]

    @property
    def problems(self) -> int:
        return len(self.failures) + self.differing


def compare_paths(bars: pd.DataFrame, policy: LockedPolicy) -> Equality:
    """Run the per-bar reference path and the batched path on ``bars``; compare them."""
    started = time.perf_counter()
    reference = run_backtest(bars, policy, batched=False)
    per_bar_s = time.perf_counter() - started
    started = time.perf_counter()
    batched = run_backtest(bars, policy, batched=True)
    batched_s = time.perf_counter() - started
    failures = []
    for name in ("decisions", "trades", "risk_events"):
        try:
            pd.testing.assert_frame_equal(getattr(reference, name), getattr(batched, name))
        except AssertionError as exc:
            failures.append(f"{name}: {' '.join(str(exc).split())[:300]}")
    try:
        pd.testing.assert_series_equal(reference.equity, batched.equity)
    except AssertionError as exc:
        failures.append(f"equity: {' '.join(str(exc).split())[:300]}")
    return Equality(len(bars), len(reference.decisions), per_bar_s, batched_s,
                    (len(reference.trades), len(batched.trades)),
                    _differing_actions(reference, batched), failures)


def print_equality(eq: Equality) -> None:
    print(f"\n2. Equality on the first {eq.bars:,} bars ({eq.decisions:,} decisions): per-bar "
          "reference path vs batched path")
    print(f"   per-bar reference (batched=False): {eq.decisions / eq.per_bar_s:>10,.0f} bars/s "
          f"({eq.per_bar_s:.2f}s)")
    print(f"   batched (default):                 {eq.decisions / eq.batched_s:>10,.0f} bars/s "
          f"({eq.batched_s:.2f}s)")
    print(f"   differing actions: {eq.differing} (must be 0); trades {eq.trades[0]:,} vs "
          f"{eq.trades[1]:,}")
    for failure in eq.failures:
        print(f"   MISMATCH {failure}")
    if not eq.problems:
        print("   decisions (action, verdict, fallback, position), trades, equity and risk "
              "events: identical (pandas.testing)")


def _differing_actions(a: BacktestResult, b: BacktestResult) -> int:
    if len(a.decisions) != len(b.decisions):
        return max(len(a.decisions), len(b.decisions))
    return int((a.decisions["action"].to_numpy() != b.decisions["action"].to_numpy()).sum())


# --- 3. memory ---------------------------------------------------------------------------

def _proc_status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` figure in KiB (VmRSS, VmHWM), None where unavailable."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (VmHWM); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def memory_child(model: Path, n: int) -> int:
    """In a fresh process: peak RSS before/after one backtest, then its tracemalloc peak."""
    bars = make_bars(n)
    policy = LockedPolicy.load(model)
    figures: dict[str, float | None] = {
        "maxrss_before_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_before_kib": _proc_status_kib("VmRSS"),
    }
    reset = _reset_peak_rss()
    run_backtest(bars, policy)
    figures["maxrss_after_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures["hwm_during_kib"] = _proc_status_kib("VmHWM") if reset else None
    tracemalloc.start()
    run_backtest(bars, policy)
    figures["traced_peak_bytes"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(MEMORY_TAG + json.dumps(figures))
    return 0


def measure_memory(model: Path, n: int) -> dict[str, float | None] | None:
    """Run :func:`memory_child` in a fresh process and return its figures.

    The child is started through ``sh`` running it as a command (not ``exec``): on Linux
    a process started directly from this one inherits this process's peak RSS in
    ``ru_maxrss`` (the kernel carries the old peak across fork + exec), which would hide
    the child's own figures. A grandchild of ``sh`` starts from zero.
    """
    command = ["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable,
               str(Path(__file__).resolve()), "--bars", str(n), "--memory-child", str(model)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith(MEMORY_TAG):
            return dict(json.loads(line[len(MEMORY_TAG):]))
    print(f"ERROR: memory child exited with {done.returncode}: "
          f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return None


def print_memory(figures: dict[str, float | None], n: int) -> None:
    def mib(key: str) -> float | None:
        value = figures.get(key)
        return None if value is None else value / 1024.0

    before, after = mib("maxrss_before_kib"), mib("maxrss_after_kib")
    rss_before, hwm = mib("rss_before_kib"), mib("hwm_during_kib")
    traced = float(figures["traced_peak_bytes"] or 0.0) / MIB
    assert before is not None and after is not None
    print(f"\n3. Peak memory of the {n:,}-bar backtest, in a fresh child process (MiB)")
    print(f"   peak RSS (ru_maxrss) after imports, bars and model load: {before:>8.1f}")
    print(f"   peak RSS (ru_maxrss) after run_backtest:                 {after:>8.1f}  "
          "(absolute process peak)")
    print(f"   ru_maxrss increment over the backtest:                   {after - before:>8.1f}")
    own = after - before
    if rss_before is not None and hwm is not None:
        own = hwm - rss_before
        print(f"   RSS just before the backtest {rss_before:.1f}, its peak during the backtest "
              f"{hwm:.1f} (VmHWM, reset first):")
        print(f"   backtest's own peak RSS increment:                       {own:>8.1f}")
    print(f"   tracemalloc peak inside run_backtest (a 2nd, traced run): {traced:>7.1f}  "
          "(Python + numpy allocations)")
    worst = max(own, traced)
    verdict = "PASS" if worst < TARGET_MB else "FAIL"
    print(f"   backtest's own peak = max(RSS increment, tracemalloc peak) = {worst:.1f} MiB "
          f"(target < {TARGET_MB:.0f} MB): {verdict}")


# --- 4. profile --------------------------------------------------------------------------

def print_profile(bars: pd.DataFrame, policy: LockedPolicy) -> None:
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.runcall(run_backtest, bars, policy)
    elapsed = time.perf_counter() - started
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(PROFILE_TOP)
    stats.sort_stats("cumulative").print_stats(PROFILE_TOP)
    print(f"\n4. cProfile of one batched run on {len(bars):,} bars ({elapsed:.1f}s under the "
          f"profiler), top {PROFILE_TOP} by own time (tottime), then by cumulative time")
    root = str(Path(sys.prefix).parent) + "/"
    for line in out.getvalue().splitlines():
        if line.strip() and not line.lstrip().startswith(("Ordered by", "List reduced")) \
                and "function calls" not in line:
            print(f"   {line.replace(root, '')}")


# --- main --------------------------------------------------------------------------------

def run(args: argparse.Namespace, model_path: Path) -> int:
    policy = LockedPolicy.load(model_path)
    note = f" ({policy.backend_note})" if policy.backend_note else ""
    card = policy.card
    assert card is not None
    print(f"model: {model_path} ({card.algorithm}, {card.total_timesteps} steps)  "
          f"LockedPolicy.load backend: {policy.backend}{note}")
    bars = make_bars(args.bars)
    print_bars(bars)
    baseline = make_baseline(bars, args.baseline_bars)
    print(f"measuring throughput: baseline {args.baseline_bars:,} bars vs ours "
          f"{args.bars:,} bars, alternating, {args.rounds} rounds...", flush=True)
    base_s, ours_s, result = measure_throughput(baseline, bars, policy, args.rounds)
    parts = breakdown_seconds(bars, result)
    print("comparing paths and measuring memory (child process)...", flush=True)
    equality = compare_paths(bars.iloc[:args.check_bars], policy)
    figures = measure_memory(model_path, args.bars)

    print_throughput(baseline, base_s, ours_s, result, parts)
    print_equality(equality)
    if figures is not None:
        print_memory(figures, args.bars)
    if args.profile:
        print_profile(bars, policy)
    if equality.problems:
        print(f"\nMISMATCH: the batched path disagreed with the per-bar reference "
              f"({equality.problems} problems): exit 1")
        return 1
    if figures is None:
        return 1
    print("\nbatched and per-bar paths agree")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    if args.memory_child is not None:
        return memory_child(args.memory_child, args.bars)
    print_environment("gymnasium", "gym-anytrading", "pandas")
    print_blas()
    return run_on_model(args.model, args.steps, lambda model: run(args, model),
                        errors=(ModelError, DataError))


if __name__ == "__main__":
    sys.exit(main())
