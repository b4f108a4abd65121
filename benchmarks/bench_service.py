"""Benchmark of the inference service's ``POST /predict`` over loopback HTTP, side by side
with the same app answering through SB3 ``model.predict`` under a lock (the seed's design).

Run::

    .venv/bin/python benchmarks/bench_service.py [--model PATH | --steps N]
        [--requests N] [--rounds N] [--clients N] [--rate R]

Without ``--model`` a small PPO model is trained into a temporary directory first. Two
servers run in child processes (this script with the hidden ``--serve`` flag), each the
app of :func:`tradinglib.service.create_app` on uvicorn, on 127.0.0.1:

- **ours**: ``create_app(LockedPolicy.load(model))`` (validation, lock, numpy forward pass);
- **sb3**: ``create_app(Sb3UnderLock(model))``: the same app whose policy calls SB3
  ``model.predict(obs, deterministic=True)`` under a ``threading.Lock``.

Each child runs torch on one thread. The load comes from this process: ``--clients``
keep-alive HTTP/1.1 connections driven by asyncio with a minimal client (a few µs per
request, so the servers, not the client, set the pace), sending real observations
(GOOGL daily bars, random-trading account). Every answer is checked against the serial
in-process answer for its observation.

1. **Closed loop**: each client sends its next request when the previous answer arrives,
   ``--requests`` requests in all: throughput (requests/s) and latency p50/p99 (ms, from
   send to answer).
2. **Paced at --rate requests/s** (default 500): request i is due at ``i / rate`` seconds;
   a client sends it when due (at once if late), latency from send to answer. Target: p99
   under 5 ms. A request can only be sent late if its connection still waits for an
   earlier answer (or the client process was not scheduled): the share sent over 1 ms
   late is printed, so a slow server cannot hide behind a delayed send (coordinated
   omission).

Ours and sb3 alternate, ``--rounds`` times each; the medians over rounds are printed,
with the ratios ours vs sb3. The machine may be shared and noisy: compare ratios within
one run. Exit code: 0 whatever the figures; 1 if an answer was wrong or an error status
came back; 2 if the model cannot be loaded or a server does not start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from bench_inference import real_observations
from common import print_environment, run_on_model

from tradinglib.exceptions import ModelError
from tradinglib.inference import LockedPolicy
from tradinglib.types import Action, Decision

START_TIMEOUT = 120.0  # seconds a child server may take to load the model and listen
ROUND_TIMEOUT = 300.0  # seconds one measured run may take before it counts as hung
TARGET_P99_MS = 5.0


class Sb3UnderLock:
    """The seed's inference: SB3 ``model.predict`` under a lock, served by the same app."""

    backend = "sb3-under-lock"

    def __init__(self, policy: LockedPolicy) -> None:
        self.model = policy.model
        self.sha256 = policy.sha256
        self._lock = threading.Lock()

    def decide(self, obs: object) -> Decision:
        started = time.perf_counter()
        with self._lock:
            action, _ = self.model.predict(np.asarray(obs, dtype=np.float32),
                                           deterministic=True)
        return Decision(Action(int(action)), "model", time.perf_counter() - started)


# --- the child: one server ---------------------------------------------------------------

def run_child(kind: str, model: Path) -> None:
    """Serve ``model`` as ``kind`` on a free loopback port; print the port; run until
    SIGTERM."""
    import torch

    from tradinglib.service import bind_socket, create_app
    from tradinglib.service.server import make_server

    torch.set_num_threads(1)
    policy = LockedPolicy.load(model)
    served = policy if kind == "ours" else Sb3UnderLock(policy)
    server = make_server(create_app(served))
    sock = bind_socket("127.0.0.1", 0)
    print(sock.getsockname()[1], served.backend, flush=True)
    server.run(sockets=[sock])


@dataclass
class Child:
    kind: str
    proc: subprocess.Popen[str]
    port: int
    backend: str


def start_child(kind: str, model: Path) -> Child:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--model", str(model)],
                            stdout=subprocess.PIPE, text=True)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()
                                                         if proc.stdout else ""))
    reader.start()
    reader.join(START_TIMEOUT)
    if not line or not line[0].strip():
        proc.kill()
        proc.wait(timeout=10)
        raise RuntimeError(f"the {kind} server did not start within {START_TIMEOUT:g}s")
    port, backend = line[0].split()
    return Child(kind, proc, int(port), backend)


def stop_child(child: Child) -> None:
    child.proc.send_signal(signal.SIGTERM)
    try:
        child.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.proc.kill()
        child.proc.wait(timeout=10)
    if child.proc.stdout is not None:
        child.proc.stdout.close()


# --- the load: a minimal keep-alive HTTP/1.1 client --------------------------------------

class Connection:
    """One keep-alive connection sending prepared ``POST /predict`` requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def prepare(port: int, obs: npt.NDArray[np.float32]) -> list[bytes]:
    """The raw HTTP requests, one per observation."""
    requests = []
    for o in obs:
        body = json.dumps({"observation": o.tolist()}).encode()
        requests.append(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                        % (port, len(body), body))
    return requests


LATE_MS = 1.0  # a paced request sent this much after its due time counts as late


@dataclass
class Run:
    """One measured run: latencies (ms), wall time (s), wrong answers, error statuses,
    and (paced runs) requests sent over LATE_MS after their due time."""

    latencies: npt.NDArray[np.float64]
    seconds: float
    wrong: int
    errors: int
    late: int

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies, q))

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds


async def drive(port: int, requests: list[bytes], expected: Sequence[str], total: int,
                clients: int, rate: float | None) -> Run:
    """Send ``total`` requests over ``clients`` connections; closed loop when ``rate`` is
    None, else request i is due ``i / rate`` seconds after the start."""
    conns = [await Connection.open(port) for _ in range(clients)]
    latencies = np.zeros(total)
    wrong = errors = late = 0
    n = len(requests)
    names = [f'"action":"{e}"'.encode() for e in expected]

    async def client(k: int, start: float) -> None:
        nonlocal wrong, errors, late
        conn = conns[k]
        for i in range(k, total, clients):
            j = (i * 7) % n
            if rate is not None:
                due = start + i / rate
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
                late += (time.perf_counter() - due) * 1000.0 > LATE_MS
            sent = time.perf_counter()
            status, body = await conn.send(requests[j])
            latencies[i] = (time.perf_counter() - sent) * 1000.0
            if status != 200:
                errors += 1
            elif names[j] not in body:
                wrong += 1

    try:
        # one untimed request per connection, so connection set-up is not measured
        await asyncio.gather(*(c.send(requests[0]) for c in conns))
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client(k, start) for k in range(clients))),
                               ROUND_TIMEOUT)
        seconds = time.perf_counter() - start
    finally:
        for c in conns:
            await c.close()
    return Run(latencies, seconds, wrong, errors, late)


# --- report ------------------------------------------------------------------------------

def median_run(runs: list[Run]) -> dict[str, float]:
    return {"p50": float(np.median([r.p(50) for r in runs])),
            "p99": float(np.median([r.p(99) for r in runs])),
            "rps": float(np.median([r.throughput for r in runs]))}


def print_table(title: str, figures: dict[str, dict[str, float]], backends: dict[str, str]
                ) -> None:
    print(f"\n{title}")
    print(f"   {'server':<38}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>10}")
    for kind in ("ours", "sb3"):
        f = figures[kind]
        print(f"   {kind + ' (' + backends[kind] + ')':<38}{f['p50']:>9.2f}{f['p99']:>9.2f}"
              f"{f['rps']:>10,.0f}")
    ours, sb3 = figures["ours"], figures["sb3"]
    print(f"   ratio sb3/ours: p50 {sb3['p50'] / ours['p50']:.2f}x  p99 "
          f"{sb3['p99'] / ours['p99']:.2f}x   throughput ours/sb3 "
          f"{ours['rps'] / sb3['rps']:.2f}x")


def run(model: Path, total: int, rounds: int, clients: int, rate: float) -> int:
    policy = LockedPolicy.load(model)
    obs = real_observations()
    expected = [policy.predict(o).name for o in obs]
    mix = {a.name: expected.count(a.name) for a in Action}
    print(f"model: {model} (in-process backend {policy.backend}); {len(obs)} real "
          f"observations, serial answers {mix}")
    children: dict[str, Child] = {}
    try:
        for kind in ("ours", "sb3"):
            children[kind] = start_child(kind, model)
        backends = {k: c.backend for k, c in children.items()}
        closed: dict[str, list[Run]] = {"ours": [], "sb3": []}
        paced: dict[str, list[Run]] = {"ours": [], "sb3": []}
        paced_total = max(clients, min(total, int(rate * 10)))
        for r in range(rounds):
            for kind in ("ours", "sb3") if r % 2 == 0 else ("sb3", "ours"):
                port = children[kind].port
                reqs = prepare(port, obs)
                print(f"round {r + 1}/{rounds}: {kind} closed loop ({total} requests), "
                      f"paced ({paced_total} at {rate:g}/s)...", flush=True)
                closed[kind].append(asyncio.run(drive(port, reqs, expected, total, clients,
                                                      None)))
                paced[kind].append(asyncio.run(drive(port, reqs, expected, paced_total,
                                                     clients, rate)))
    finally:
        for child in children.values():
            stop_child(child)
    print_table(f"1. Closed loop: {clients} clients, {total} requests per run, median of "
                f"{rounds} runs", {k: median_run(v) for k, v in closed.items()}, backends)
    paced_fig = {k: median_run(v) for k, v in paced.items()}
    print_table(f"2. Paced: {rate:g} requests/s from {clients} clients, {paced_total} "
                f"requests per run, median of {rounds} runs", paced_fig, backends)
    for kind in ("ours", "sb3"):
        late = sum(x.late for x in paced[kind])
        sent = sum(len(x.latencies) for x in paced[kind])
        print(f"   {kind}: {late} of {sent} requests sent over {LATE_MS:g} ms after their "
              f"due time ({100 * late / sent:.2f}%)")
    p99 = paced_fig["ours"]["p99"]
    verdict = "PASS" if p99 < TARGET_P99_MS else "FAIL"
    print(f"   ours p99 at {rate:g} req/s = {p99:.2f} ms (target < {TARGET_P99_MS:g} ms): "
          f"{verdict}")
    all_runs = [x for runs in (*closed.values(), *paced.values()) for x in runs]
    wrong = sum(x.wrong for x in all_runs)
    errors = sum(x.errors for x in all_runs)
    print(f"\nanswers checked: {sum(len(x.latencies) for x in all_runs):,}; wrong actions "
          f"{wrong}, error statuses {errors}")
    return 1 if wrong or errors else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an SB3 zip with its card (default: "
                                                   "train one)")
    parser.add_argument("--steps", type=int, default=8192,
                        help="training steps of the model trained when --model is absent")
    parser.add_argument("--requests", type=int, default=6400,
                        help="requests per closed-loop run (default 6400 = 32 x 200)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per server (default 3)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent connections")
    parser.add_argument("--rate", type=float, default=500.0,
                        help="requests/s of the paced run (default 500)")
    parser.add_argument("--serve", choices=("ours", "sb3"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.requests, args.rounds, args.clients, args.steps) < 1 or args.rate <= 0:
        parser.error("--requests, --rounds, --clients, --steps and --rate must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        run_child(args.serve, args.model)
        return 0
    print_environment("fastapi", "uvicorn", "httpx")
    print(f"server processes: 2 (ours, sb3), torch threads 1 each; load: this process "
          f"(pid {os.getpid()})")
    return run_on_model(
        args.model, args.steps,
        lambda model: run(model, args.requests, args.rounds, args.clients, args.rate),
        errors=(ModelError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
