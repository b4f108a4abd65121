"""Decision latency of an IB paper session: a bar arriving at the client to the order it
causes arriving at the gateway simulator, on loopback, over N cycles.

The gateway runs in its own process, as TWS or IB Gateway would: it publishes a bar,
waits for the order it causes (the arrival is the time of its own log record of the
order), waits 50 ms (ib_async throttles itself to 45 requests a second), and repeats.
The client records when each new bar reached it (ib_async's bar update event). Both
sides read CLOCK_MONOTONIC (``time.monotonic``), one clock for all processes on Linux.

- Baseline, in the same run: the floor of that round trip, an ib_async client that places
  an order the moment a bar arrives and does nothing else.
- Ours: the real session loop (``run_session`` with broker ``"ib"``: account sync, bars,
  features, validation, locked inference, risk guard, journal, order with its ref). The
  model's action is computed, then replaced by BUY and SELL in turn, so every cycle sends
  an order.

Prints p50/p99 of both and the ratio; target p99 under 10 ms.

    .venv/bin/python -m benchmarks.bench_paper_latency --cycles 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

_PACE_S = 0.05
"""Seconds between a cycle's order and the next bar (ib_async sends <= 45 requests/s)."""
_SETTLE_S = 1.0
_TAIL_BARS = 5
"""Bars published after the measured cycles, so the session books and flattens."""


# -- the gateway process -----------------------------------------------------------------

class _Arrivals(logging.Handler):
    """Monotonic times of the gateway's "order ... ref ..." records (order arrivals)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("order ") and " ref " in message:
            self.times.append(time.monotonic())
            self.event.set()


def _serve_and_drive(cycles: int) -> None:
    """Serve a gateway, print its port; once a client is there, drive ``cycles`` bars
    and print each cycle's order arrival time (None if no order came) as JSON; serve
    until stdin closes."""
    from tradinglib.data import load_bars
    from tradinglib.gateway import Gateway, GatewayThread

    arrivals = _Arrivals()
    gateway_log = logging.getLogger("tradinglib.gateway")
    gateway_log.setLevel(logging.INFO)
    gateway_log.addHandler(arrivals)
    gateway_log.propagate = False
    with GatewayThread(Gateway(load_bars("googl-daily"), bar_seconds=0, start=60)) as g:
        print(f"port {g.port}", flush=True)
        deadline = time.monotonic() + 60
        while not g.clients() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(_SETTLE_S)
        arrived: list[float | None] = []
        for _ in range(cycles):
            time.sleep(_PACE_S)
            arrivals.event.clear()
            seen = len(arrivals.times)
            g.advance()
            got = arrivals.event.wait(1.0) and len(arrivals.times) > seen
            arrived.append(arrivals.times[seen] if got else None)
        for _ in range(_TAIL_BARS):
            time.sleep(0.2)
            g.advance()
        print(json.dumps(arrived), flush=True)
        sys.stdin.read()  # until the benchmark is done with us


# -- the clients ---------------------------------------------------------------------------

def _baseline(port: int, stop: threading.Event, bar_times: list[float]) -> None:
    """An ib_async client that sends an order on every new bar, nothing else; the
    arrival time of every new bar goes to ``bar_times``."""
    import ib_async

    async def main() -> None:
        ib = ib_async.IB()
        await ib.connectAsync("127.0.0.1", port, clientId=9, timeout=5)
        contract = (await ib.qualifyContractsAsync(ib_async.Stock("GOOGL", "SMART", "USD")))[0]
        bars = await ib.reqHistoricalDataAsync(contract, "", "2 Y", "1 day", "TRADES", True,
                                               formatDate=2, keepUpToDate=True)

        def on_bar(bars: object, new: bool) -> None:
            if new:
                bar_times.append(time.monotonic())
                n = len(ib.trades())
                order = ib_async.MarketOrder("BUY" if n % 2 == 0 else "SELL", 5)
                order.orderRef = f"b-{n}"
                ib.placeOrder(contract, order)

        bars.updateEvent += on_bar
        while not stop.is_set():
            await asyncio.sleep(0.05)
        ib.disconnect()

    asyncio.run(main())


def _session(port: int, model: Path, folder: Path, cycles: int,
             bar_times: list[float]) -> None:
    """The real session, every decision turned into an order; the arrival time of every
    new bar (IBBroker's bar update handler) goes to ``bar_times``."""
    from tradinglib.broker.ib import IBBroker
    from tradinglib.inference import LockedPolicy
    from tradinglib.session import SessionConfig, run_session
    from tradinglib.types import Action, Decision

    real_decide = LockedPolicy.decide
    turn = {"n": 0}

    def decide(self: LockedPolicy, obs: object) -> Decision:
        answer = real_decide(self, obs)  # the model's work is measured
        turn["n"] += 1
        return Decision(Action.BUY if turn["n"] % 2 else Action.SELL, "model", answer.latency)

    on_bars = IBBroker._on_bars

    def record(self: IBBroker, bars: object, has_new_bar: bool) -> None:
        if has_new_bar:
            bar_times.append(time.monotonic())
        on_bars(self, bars, has_new_bar)

    LockedPolicy.decide = decide  # type: ignore[method-assign]
    IBBroker._on_bars = record  # type: ignore[method-assign]
    config = SessionConfig(model_path=model, broker="ib", ib_port=port, cycle_seconds=2.0,
                           run_id="bench", session_minutes=(cycles + 1) * 2.0 / 60,
                           max_daily_loss=1e9, max_position_value=1e9)
    try:
        run_session(config, folder)
    finally:
        LockedPolicy.decide = real_decide  # type: ignore[method-assign]
        IBBroker._on_bars = on_bars  # type: ignore[method-assign]


def _measure(cycles: int, client: str, model: Path, folder: Path) -> list[float]:
    """Start a gateway process, run ``client`` against it; the latencies it measured."""
    gateway = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_paper_latency", "--gateway-process",
         "--cycles", str(cycles)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    assert gateway.stdout is not None and gateway.stdin is not None
    port = int(gateway.stdout.readline().split()[1])
    stop = threading.Event()
    bar_times: list[float] = []
    if client == "baseline":
        runner = threading.Thread(target=_baseline, args=(port, stop, bar_times), daemon=True)
    else:
        runner = threading.Thread(target=_session,
                                  args=(port, model, folder, cycles, bar_times), daemon=True)
    runner.start()
    arrived = json.loads(gateway.stdout.readline())
    stop.set()
    runner.join(120)
    gateway.stdin.close()
    gateway.wait(30)
    gateway.stdout.close()
    return [(order - bar) * 1000 for order, bar in zip(arrived, bar_times, strict=False)
            if order is not None]


def _percentiles(name: str, ms: list[float]) -> float:
    p50, p99 = (float(np.percentile(ms, q)) for q in (50, 99))
    print(f"{name:40} n={len(ms):5}  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
          f"max {max(ms):7.2f} ms")
    return p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=2048, help="PPO training steps")
    parser.add_argument("--gateway-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gateway_process:
        _serve_and_drive(args.cycles)
        return
    from benchmarks.common import print_environment, train_small_model

    print_environment("ib_async")
    with tempfile.TemporaryDirectory() as tmp:
        model = train_small_model(Path(tmp) / "bench.zip", args.steps)
        base = _measure(args.cycles, "baseline", model, Path(tmp) / "none")
        logging.getLogger("tradinglib").setLevel(logging.WARNING)
        ours = _measure(args.cycles, "session", model, Path(tmp) / "session")
    print(f"\nbar arrived at the client -> order arrived at the gateway (own process), "
          f"loopback, {args.cycles} cycles each:")
    base99 = _percentiles("baseline (bare ib_async on-bar order)", base)
    p99 = _percentiles("tradinglib session (full decision path)", ours)
    print(f"decision path: p99 {p99 / base99:.1f}x the bare round trip; "
          f"target p99 < 10 ms: {'met' if p99 < 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
