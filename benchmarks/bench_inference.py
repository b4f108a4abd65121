"""Benchmark of LockedPolicy against Stable-Baselines3's own ``predict``, in one process.

Run::

    .venv/bin/python benchmarks/bench_inference.py [--steps N] [--calls N] [--model PATH]

Without ``--model`` a small PPO model is trained into a temporary directory first
(``train_model`` on the built-in GOOGL daily bars, ``--steps`` steps, seed 0). The
observations are real: 400 observations of a random-trading account over GOOGL daily
bars, built with :class:`tradinglib.execution.Simulation` as the tests do. Torch runs on
one thread (``torch.set_num_threads(1)``), as training does.

What is measured:

1. Single-observation latency, in microseconds (p50 and p99 over ``--calls`` calls each):
   ``LockedPolicy.predict`` (validation + lock + the numpy fast path),
   ``LockedPolicy.decide`` (the same, never raises), ``LockedPolicy`` with the sb3
   backend (``load(path, fast=False)``: validation + lock + ``model.predict``) and raw
   SB3 ``model.predict(obs, deterministic=True)`` on the same model. Each call is timed
   with ``time.perf_counter_ns``; the contenders take turns in small blocks, round after
   round, so that machine noise hits all of them alike. The headline figure is the ratio
   SB3 p50 / LockedPolicy p50 (target: at least 20x); the per-round ratios show how
   stable it is. Every timed action is also checked against SB3's own answer.
2. Sixteen threads: throughput (calls/s) of 16 threads calling at once (released together
   by a ``threading.Barrier``) against one thread making the same number of calls, and
   the actions that differ from the serial answers for the same observations, for
   (a) LockedPolicy, numpy backend, (b) LockedPolicy, sb3 backend, (c) raw SB3
   ``model.predict`` with no lock. (c) is the trap the lock exists for: SB3's policy keeps
   the last distribution on a shared object, so unlocked threads can silently get each
   other's actions. Its mismatch count is reported as measured, whatever it is. A swap
   only shows when the two observations have different answers, so the mix of serial
   answers is printed too, with a warning when the model (nearly) always answers the same.

How to read it: the machine may be shared and noisy, so absolute times drift between runs;
ratios taken within one run are the figures to compare. A threaded/serial throughput
below 1x is expected for the locked paths (one lock, plus the GIL): the lock buys
correctness, not parallelism.

Exit code: 0 whatever the ratio (this is a measurement); 1 if a locked path ever returned
an action different from the serial/SB3 answer, or if a threaded run did not finish; 2 if
the model cannot be loaded.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from common import print_environment, run_on_model

from tradinglib.data import load_bars
from tradinglib.execution import Simulation
from tradinglib.inference import LockedPolicy
from tradinglib.types import Action

THREADS = 16
N_OBSERVATIONS = 400
BLOCK = 100  # calls per contender per round in the latency benchmark
WARMUP = 200  # untimed calls per contender before the latency benchmark
FAST_FACTOR = 10  # numpy-backend throughput runs make this many times more calls
THROUGHPUT_ROUNDS = 3  # serial and threaded runs alternate this many times
JOIN_TIMEOUT = 120.0  # seconds a threaded run may take before it counts as hung
TARGET_RATIO = 20.0
MIN_VISIBLE = 0.10  # below this share of differing answer pairs, warn that (c) under-reports
SOURCE = "googl-daily"

Predict = Callable[[npt.NDArray[np.float32]], object]


@dataclass
class Latency:
    """Per-call times (ns) of one contender, and its actions, in call order."""

    name: str
    fn: Predict
    times: list[int]
    actions: list[int]

    def p(self, q: float) -> float:
        """The q-th percentile, in microseconds."""
        return float(np.percentile(self.times, q)) / 1000.0


@dataclass
class Throughput:
    """Serial and 16-thread throughput of one contender, with their mismatches."""

    name: str
    calls: int
    serial_per_s: float
    threaded_per_s: float
    serial_mismatches: int
    threaded_mismatches: int
    errors: int

    @property
    def threaded_rate(self) -> float:
        """Share of threaded calls whose action differs from the serial answer."""
        return self.threaded_mismatches / self.calls


def action_of(result: object) -> int:
    """The action id in whatever a contender returned (Action, Decision or SB3 tuple)."""
    if isinstance(result, tuple):
        return int(result[0])
    return int(getattr(result, "action", result))


# --- setup -------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8192,
                        help="training steps of the model trained when --model is absent")
    parser.add_argument("--calls", type=int, default=20_000,
                        help="timed calls per contender (latency) and per throughput run "
                             f"(x{FAST_FACTOR} for the numpy backend)")
    parser.add_argument("--model", type=Path, default=None,
                        help="an SB3 zip with its card beside it (default: train one)")
    args = parser.parse_args(argv)
    if args.calls < THREADS or args.steps < 1:
        parser.error(f"--calls must be >= {THREADS} and --steps >= 1")
    return args


def real_observations(n: int = N_OBSERVATIONS) -> npt.NDArray[np.float32]:
    """Real observations: GOOGL daily bars with a random-trading account."""
    sim, rng, rows = Simulation(load_bars(SOURCE)), np.random.default_rng(0), []
    obs = sim.reset()
    while not sim.done and len(rows) < n:
        rows.append(obs)
        sim.step(Action(int(rng.integers(0, 3))))
        obs = sim.observation()
    return np.stack(rows)


def print_model(fast: LockedPolicy, model_path: Path) -> None:
    note = f" ({fast.backend_note})" if fast.backend_note else ""
    print(f"model: {model_path} ({fast.card.algorithm}, {fast.card.total_timesteps} steps)  "
          f"LockedPolicy.load backend: {fast.backend}{note}")


# --- 1. single-observation latency -------------------------------------------------------

def measure_latency(contenders: list[Latency], obs: npt.NDArray[np.float32],
                    calls: int) -> list[tuple[float, ...]]:
    """Time ``calls`` calls of each contender, interleaved in blocks; return per-round p50s.

    Call i of every contender gets ``obs[i % len(obs)]``; the contender order rotates
    each round. Returns, for each round, the p50 (µs) of each contender in that round.
    """
    n = len(obs)
    for c in contenders:
        for i in range(WARMUP):
            c.fn(obs[i % n])
    rounds: list[tuple[float, ...]] = []
    for r, start in enumerate(range(0, calls, BLOCK)):
        stop = min(start + BLOCK, calls)
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for c in order:
            _timed_block(c, obs, start, stop)
        rounds.append(tuple(float(np.median(c.times[start:stop])) / 1000.0
                            for c in contenders))
    return rounds


def _timed_block(c: Latency, obs: npt.NDArray[np.float32], start: int, stop: int) -> None:
    fn, clock, n = c.fn, time.perf_counter_ns, len(obs)
    for i in range(start, stop):
        o = obs[i % n]
        t0 = clock()
        result = fn(o)
        t1 = clock()
        c.times.append(t1 - t0)
        c.actions.append(action_of(result))


def latency_mismatches(c: Latency, reference: Sequence[int]) -> int:
    """Timed calls of ``c`` whose action differs from ``reference`` for the same obs."""
    n = len(reference)
    return sum(a != reference[i % n] for i, a in enumerate(c.actions))


# --- 2. sixteen threads ------------------------------------------------------------------

def _run_calls(predict: Predict, obs: npt.NDArray[np.float32], expected: Sequence[int],
               offset: int, count: int) -> tuple[int, int]:
    """Make ``count`` calls from obs ``offset`` on; return (mismatches, errors)."""
    n, mismatches, errors = len(obs), 0, 0
    for i in range(count):
        j = (offset + i) % n
        try:
            action = action_of(predict(obs[j]))
        except Exception:  # raw SB3 under threads may fail outright: count it
            errors += 1
            continue
        mismatches += action != expected[j]
    return mismatches, errors


def run_serial(predict: Predict, obs: npt.NDArray[np.float32], expected: Sequence[int],
               calls: int) -> tuple[float, int, int]:
    """(seconds, mismatches, errors) of ``calls`` calls from one thread."""
    per_thread = calls // THREADS
    started = time.perf_counter()
    mismatches = errors = 0
    for k in range(THREADS):  # the same observations the threads will use
        m, e = _run_calls(predict, obs, expected, k * 7, per_thread)
        mismatches, errors = mismatches + m, errors + e
    return time.perf_counter() - started, mismatches, errors


def run_threaded(predict: Predict, obs: npt.NDArray[np.float32], expected: Sequence[int],
                 calls: int) -> tuple[float, int, int]:
    """(seconds, mismatches, errors) of ``calls`` calls spread over 16 threads at once.

    Raises:
        TimeoutError: a thread did not reach the barrier or finish within JOIN_TIMEOUT.
    """
    per_thread = calls // THREADS
    barrier = threading.Barrier(THREADS + 1)  # + this thread, which starts the clock
    results: list[tuple[int, int]] = [(0, 0)] * THREADS

    def worker(k: int) -> None:
        barrier.wait(timeout=JOIN_TIMEOUT)
        results[k] = _run_calls(predict, obs, expected, k * 7, per_thread)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True)
               for k in range(THREADS)]
    for t in threads:
        t.start()
    barrier.wait(timeout=JOIN_TIMEOUT)
    started = time.perf_counter()
    deadline = time.monotonic() + JOIN_TIMEOUT
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    elapsed = time.perf_counter() - started
    if any(t.is_alive() for t in threads):
        raise TimeoutError(f"threads still running after {JOIN_TIMEOUT:.0f}s")
    return elapsed, sum(m for m, _ in results), sum(e for _, e in results)


def measure_throughput(name: str, predict: Predict, obs: npt.NDArray[np.float32],
                       expected: Sequence[int], calls: int) -> Throughput:
    """Alternate serial and threaded runs THROUGHPUT_ROUNDS times; total them."""
    calls = calls // THREADS * THREADS
    per_round = calls // THROUGHPUT_ROUNDS // THREADS * THREADS
    serial_s = threaded_s = 0.0
    serial_m = threaded_m = errors = 0
    for _ in range(THROUGHPUT_ROUNDS):
        s, m, e = run_serial(predict, obs, expected, per_round)
        serial_s, serial_m, errors = serial_s + s, serial_m + m, errors + e
        s, m, e = run_threaded(predict, obs, expected, per_round)
        threaded_s, threaded_m, errors = threaded_s + s, threaded_m + m, errors + e
    total = per_round * THROUGHPUT_ROUNDS
    return Throughput(name, total, total / serial_s, total / threaded_s,
                      serial_m, threaded_m, errors)


# --- report ------------------------------------------------------------------------------

def print_latency_table(contenders: list[Latency], rounds: list[tuple[float, ...]],
                        reference: Sequence[int]) -> int:
    """Print the latency table and the ratio line; return the locked paths' mismatches."""
    fast, sb3 = contenders[0], contenders[-1]
    print(f"\n1. Single-observation latency, µs ({len(fast.times)} calls each, interleaved "
          f"in {len(rounds)} rounds of {BLOCK}; {len(reference)} distinct real observations)")
    print(f"   {'path':<44}{'p50':>9}{'p99':>9}{'vs SB3 p50':>12}{'mismatches':>12}")
    locked_mismatches = 0
    for c in contenders:
        wrong = latency_mismatches(c, reference)
        if c is not sb3:
            locked_mismatches += wrong
        print(f"   {c.name:<44}{c.p(50):>9.1f}{c.p(99):>9.1f}"
              f"{sb3.p(50) / c.p(50):>11.1f}x{wrong:>12}")
    ratio = sb3.p(50) / fast.p(50)
    per_round = sorted(r[-1] / r[0] for r in rounds)
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"   per-round ratio SB3/LockedPolicy p50: min {per_round[0]:.1f}x  "
          f"median {float(np.median(per_round)):.1f}x  max {per_round[-1]:.1f}x")
    print(f"   ratio SB3 p50 / LockedPolicy.predict p50 = {ratio:.1f}x "
          f"(target >= {TARGET_RATIO:.0f}x): {verdict}")
    return locked_mismatches


def print_action_mix(reference: Sequence[int]) -> None:
    """Print the serial answers' mix: a swap between threads shows only if answers differ."""
    counts = np.bincount(reference, minlength=len(Action))
    shares = counts / counts.sum()
    visible = 1.0 - float(np.sum(shares**2))  # chance two random observations differ
    mix = ", ".join(f"{a.name} {int(counts[a])}" for a in Action)
    print(f"   serial answers on the {len(reference)} observations: {mix}; a swapped answer "
          f"is visible for {100 * visible:.1f}% of observation pairs")
    if visible < MIN_VISIBLE:
        print("   WARNING: this model nearly always gives the same answer, so (c) cannot show "
              "most swaps; rerun with a livelier model (--steps 8192, or --model "
              "models/demo-googl.zip)")


def print_throughput_table(rows: list[Throughput]) -> None:
    print(f"\n2. {THREADS} threads vs 1 thread, same calls and observations "
          f"({THROUGHPUT_ROUNDS} alternating rounds each)")
    print(f"   {'path':<40}{'calls':>7}{'serial/s':>11}{'16 thr/s':>11}{'thr/ser':>9}"
          f"{'mismatches (rate)':>22}{'errors':>8}")
    for r in rows:
        wrong = f"{r.threaded_mismatches} ({100 * r.threaded_rate:.2f}%)"
        print(f"   {r.name:<40}{r.calls:>7}{r.serial_per_s:>11,.0f}{r.threaded_per_s:>11,.0f}"
              f"{r.threaded_per_s / r.serial_per_s:>8.2f}x{wrong:>22}{r.errors:>8}")
    print("   mismatches: threaded calls whose action differs from the serial answer for the "
          "same observation")


# --- main --------------------------------------------------------------------------------

def run(model_path: Path, calls: int) -> int:
    fast = LockedPolicy.load(model_path)
    slow = LockedPolicy.load(model_path, fast=False)
    model = fast.model
    sb3_predict: Predict = partial(model.predict, deterministic=True)
    print_model(fast, model_path)
    obs = real_observations()

    # reference: SB3's own deterministic answers, one observation at a time
    reference = [action_of(sb3_predict(o)) for o in obs]
    agree = sum(
        action_of(fast.predict(o)) == action_of(fast.decide(o)) == action_of(slow.predict(o))
        == ref for o, ref in zip(obs, reference, strict=True))
    print(f"actions on {len(obs)} real observations: LockedPolicy.predict/decide "
          f"({fast.backend}), "
          f"LockedPolicy (sb3) and SB3 predict agree on {agree}/{len(obs)}")

    print(f"measuring latency ({calls} calls per path)...", flush=True)
    contenders = [
        Latency(f"LockedPolicy.predict ({fast.backend})", fast.predict, [], []),
        Latency(f"LockedPolicy.decide ({fast.backend})", fast.decide, [], []),
        Latency("LockedPolicy.predict (sb3 backend, locked)", slow.predict, [], []),
        Latency("SB3 model.predict(deterministic=True)", sb3_predict, [], []),
    ]
    rounds = measure_latency(contenders, obs, calls)

    print(f"measuring {THREADS}-thread throughput...", flush=True)
    try:
        rows = [
            measure_throughput(f"(a) LockedPolicy ({fast.backend} backend)", fast.predict,
                               obs, reference, calls * (FAST_FACTOR if fast.backend == "numpy"
                                                        else 1)),
            measure_throughput("(b) LockedPolicy (sb3 backend, locked)", slow.predict,
                               obs, reference, calls),
            measure_throughput("(c) SB3 model.predict, NO lock", sb3_predict,
                               obs, reference, calls),
        ]
    except (TimeoutError, threading.BrokenBarrierError) as exc:
        print(f"ERROR: a threaded run did not finish: {exc!r}")
        return 1

    locked_wrong = print_latency_table(contenders, rounds, reference)
    print_throughput_table(rows)
    print_action_mix(reference)
    locked_wrong += agree != len(obs)
    locked_wrong += sum(r.serial_mismatches + r.threaded_mismatches + r.errors
                        for r in rows[:2])
    decide_fallbacks = sum(fast.fallbacks.values())
    print(f"\nLockedPolicy.decide HOLD fallbacks: {decide_fallbacks}"
          + (f" {fast.fallbacks}" if decide_fallbacks else ""))
    if locked_wrong:
        print(f"MISMATCH: locked paths disagreed with the serial/SB3 answers {locked_wrong} times")
        return 1
    print("locked paths: every action matched the serial/SB3 answer")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    print_environment()
    return run_on_model(args.model, args.steps, lambda model: run(model, args.calls))


if __name__ == "__main__":
    sys.exit(main())
