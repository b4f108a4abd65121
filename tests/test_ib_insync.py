"""The IB adapter on ib_insync, for users who pin it: run in a second environment
(.venv-ib-insync, made by ``make test``: ib_insync, no ib_async, no torch) against the
gateway simulator served from this process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import missing

from tradinglib.gateway import Gateway, GatewayThread

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv-ib-insync" / "bin" / "python"

_SCRIPT = """
import json, sys, time
from tradinglib.broker.base import OrderRequest
from tradinglib.broker.ib import IBBroker, client

broker = IBBroker(port=int(sys.argv[1]), client_id=5, ref_prefix="i-", timeout=3.0)
broker.connect()
bars = broker.bars("GOOGL")
cash = broker.account().cash
placed = broker.place_order(OrderRequest("i-1", "GOOGL", 5))
deadline = time.monotonic() + 10
while not broker.fills_since(0) and time.monotonic() < deadline:
    broker.wait_for_bar(0.5)
again = broker.place_order(OrderRequest("i-1", "GOOGL", 5))
fills = broker.fills_since(0)
print(json.dumps({
    "library": client.LIBRARY,
    "modules": sorted({m.split(".")[0] for m in sys.modules}
                      & {"torch", "stable_baselines3", "ib_async", "ib_insync"}),
    "bars": len(bars), "cash": cash, "placed": placed.status, "again": again.detail,
    "fills": [[f.ref, f.fill.quantity, f.fill.price] for f in fills],
    "position": broker.account().position,
}))
broker.close()
"""


@pytest.mark.slow
def test_the_adapter_runs_on_ib_insync(googl: pd.DataFrame, tmp_path: Path) -> None:
    if not PYTHON.is_file():
        missing(f"{PYTHON} is missing: `make test` creates it "
                    "(requirements/ib-insync.txt)")
    script = tmp_path / "insync.py"
    script.write_text(_SCRIPT)
    with GatewayThread(Gateway(googl, bar_seconds=0.1)) as g:
        proc = subprocess.run([str(PYTHON), str(script), str(g.port)], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        executions = g.executions()
    assert out["library"] == "ib_insync"
    assert out["modules"] == ["ib_insync"]  # no ib_async, no torch
    assert out["bars"] > 49 and out["cash"] == 100_000.0
    # the paced replay may publish the filling bar before the acknowledgement is read
    assert out["placed"] in ("submitted", "filled") and "not sent again" in out["again"]
    assert [f[0] for f in out["fills"]] == ["i-1"] and out["position"] == 5
    assert [(e.order_ref, e.shares, e.price) for e in executions] == [
        ("i-1", 5, pytest.approx(out["fills"][0][2]))]
