"""`make lab`: JupyterLab from the venv, on loopback, serving the project's notebooks."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import missing

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"train.ipynb", "backtest.ipynb", "paper_session.ipynb", "report.ipynb",
             "explore.ipynb", "sweep_report.ipynb"}
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


def _jupyter() -> Path:
    path = Path(sys.executable).with_name("jupyter")
    if not path.is_file():
        missing(f"{path} not found: jupyter is not installed beside this Python")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read().decode())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT twice (Jupyter's clean shutdown), then SIGTERM, then SIGKILL; bounded."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM):
        proc.send_signal(sig)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S / 3)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait(timeout=STOP_TIMEOUT_S)


def _root_flag() -> list[str]:
    """Jupyter refuses to run as root without --allow-root (`make lab` adds it too)."""
    return ["--allow-root"] if os.geteuid() == 0 else []


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, str, Path, subprocess.Popen[bytes]]]:
    """JupyterLab as `make lab` starts it, on a free port with a random token."""
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "IPYTHONDIR": str(tmp_path / "ipython")}
    log = tmp_path / "lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(_jupyter()), "lab", "--ip", "127.0.0.1", f"--port={port}",
             "--port-retries=0", "--no-browser", "--ServerApp.open_browser=False",
             f"--ServerApp.root_dir={ROOT}", f"--IdentityProvider.token={token}",
             *_root_flag()],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        yield f"http://127.0.0.1:{port}", token, log, proc
    finally:
        _stop(proc)


@pytest.mark.slow
def test_lab_serves_the_notebooks(
        lab: tuple[str, str, Path, subprocess.Popen[bytes]]) -> None:
    base, token, log, proc = lab
    deadline = time.monotonic() + START_TIMEOUT_S
    listing: Any = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            listing = _get(f"{base}/api/contents/notebooks?token={token}")
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    assert listing is not None, (
        f"JupyterLab did not answer within {START_TIMEOUT_S:.0f} s (exit code {proc.poll()}):"
        f"\n{log.read_text(errors='replace')[-3000:]}")
    names = {item["name"] for item in listing["content"] if item["type"] == "notebook"}
    assert names == NOTEBOOKS
    with pytest.raises(urllib.error.HTTPError) as denied:  # the token is required
        _get(f"{base}/api/contents/notebooks")
    assert denied.value.code == 403
    denied.value.close()
    spec = _get(f"{base}/api/kernelspecs?token={token}")
    assert "python3" in spec["kernelspecs"]


def test_make_lab_runs_jupyter_lab_on_loopback_in_the_project_root() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    # a clean make, also when the suite itself runs under `make test` (no "make[1]:" lines)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run([make, "--no-print-directory", "-n", "lab"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    command = done.stdout.strip().splitlines()[-1].split()
    assert command == [".venv/bin/jupyter", "lab", "--ip", "127.0.0.1", "--no-browser",
                       f"--ServerApp.root_dir={ROOT}", *_root_flag()]
