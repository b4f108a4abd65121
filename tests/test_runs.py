"""Archived runs: real papermill, a real ipykernel, and deliberately broken notebooks.

The notebooks in ``tests/notebooks/`` are this file's own: ``ok`` (records typed results and
files), ``raises`` (KeyError in its third code cell after the parameters), ``dies``
(``os._exit(3)``), ``slow`` (sleeps past any short timeout) and ``report`` (reads another
run's results). CLI tests copy them into a throw-away project as ``notebooks/<kind>.ipynb``
and point ``$TRADINGLIB_ROOT`` at it, so nothing is written into the real ``runs/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tradinglib import cli, runs
from tradinglib.exceptions import InputError, StopError
from tradinglib.results import read_results, record_results, result_path, to_jsonable

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
ID_RE = r"\d{8}T\d{6}Z"
NOISE = ("Traceback", "[IPKernelApp]", "without encryption", "Passed unknown parameter",
         "hello from the kernel 7", "to stderr\n", "raw fd 2 from", "-----")


@dataclasses.dataclass
class Invocation:
    """One in-process ``tradinglib`` command: exit code and captured output."""

    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        return self.out.rstrip("\n").splitlines()[-1]


def invoke(argv: list[str]) -> Invocation:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return Invocation(code, out.getvalue(), err.getvalue())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_project(root: Path) -> Path:
    """A project whose notebooks are this file's test notebooks."""
    (root / "notebooks").mkdir(parents=True)
    (root / "params").mkdir()
    for kind, name in (("train", "ok"), ("backtest", "raises"), ("paper", "ok"),
                       ("report", "report")):
        shutil.copy(NOTEBOOKS / f"{name}.ipynb", root / "notebooks" / runs.KINDS[kind])
    (root / "params" / "train.yaml").write_text("x: 2\nname: b\nflag: false\n")
    (root / "params" / "backtest.yaml").write_text("{}\n")
    (root / "params" / "paper.yaml").write_text("x: 4\n")
    return root


@dataclasses.dataclass
class Project:
    """A throw-away project and the runs made in it once for the whole module."""

    root: Path
    ok: Invocation
    raises: Invocation
    paper: Invocation

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = make_project(tmp_path_factory.mktemp("project"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRADINGLIB_ROOT", str(root))
        mp.setattr(cli, "_validator", lambda err: None)  # the test notebooks' own params
        ok = invoke(["run", "train", "-f", str(root / "params" / "train.yaml"),
                     "-p", "x", "7", "-p", "ratio", "1e-3", "-p", "flag", "true",
                     "-p", "name", "09:30", "-p", "items", "[1, 2]", "--timeout", "60"])
        raises = invoke(["run", "backtest", "--timeout", "60"])
        paper = invoke(["run", "paper", "--timeout", "60"])
        yield Project(root, ok, raises, paper)


# --------------------------------------------------------------------------- a good run


@pytest.mark.slow
def test_ok_run_prints_its_folder_last(project: Project) -> None:
    assert project.ok.code == 0, project.ok.err
    folder = Path(project.ok.last_line)
    assert folder.parent == project.runs_dir
    assert re.fullmatch(rf"{ID_RE}-train-train", folder.name)
    assert folder.is_dir()
    assert not [p for p in project.runs_dir.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.slow
def test_ok_run_console_is_short_and_quiet(project: Project) -> None:
    text = project.ok.out + project.ok.err
    assert "[3/7]" in project.ok.err and "import os" in project.ok.err
    assert "ok: " in project.ok.out and "total_return +1.23%" in project.ok.out
    for noise in NOISE:
        assert noise not in text, noise


@pytest.mark.slow
def test_ok_run_manifest_hashes_every_file(project: Project) -> None:
    folder = Path(project.ok.last_line)
    manifest = json.loads((folder / "manifest.json").read_text())
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json"}
    assert {"params.yaml", "notebook.ipynb", "kernel.log", "results.json", "equity.csv",
            "tables/trades.csv"} <= set(manifest["files"])
    for name, info in manifest["files"].items():
        assert info["sha256"] == sha256(folder / name), name
        assert info["bytes"] == (folder / name).stat().st_size
    assert runs.verify_run(folder) == []
    assert manifest["id"] == folder.name
    assert (manifest["kind"], manifest["label"], manifest["status"]) == ("train", "train", "ok")
    assert manifest["error"] is None
    started = datetime.fromisoformat(manifest["started"])
    finished = datetime.fromisoformat(manifest["finished"])
    assert started.tzinfo is not None and started <= finished
    assert 0 < manifest["duration_s"] < 60
    assert manifest["git"] is None  # the throw-away project is not a git work tree
    assert manifest["packages"]["papermill"] and manifest["packages"]["numpy"]
    assert manifest["python"]["executable"] == sys.executable
    assert manifest["notebook"]["source"] == "notebooks/train.ipynb"
    assert manifest["notebook"]["sha256"] == sha256(NOTEBOOKS / "ok.ipynb")
    assert manifest["params_file"] == {
        "path": "params/train.yaml", "sha256": sha256(project.root / "params/train.yaml")}
    assert manifest["overrides"]["x"] == 7


@pytest.mark.slow
def test_ok_run_files_are_read_only(project: Project) -> None:
    folder = Path(project.ok.last_line)
    for path in folder.rglob("*"):
        if path.is_file():
            assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


@pytest.mark.slow
def test_overrides_are_typed_and_reach_the_kernel(project: Project) -> None:
    folder = Path(project.ok.last_line)
    params = yaml.safe_load((folder / "params.yaml").read_text())
    assert params == {"x": 7, "name": "09:30", "flag": True, "ratio": 0.001, "items": [1, 2]}
    results = read_results(folder)
    assert results["x"] == 7 and results["x_type"] == "int"
    assert results["flag"] is True and results["ratio"] == 0.001
    assert results["name"] == "09:30" and results["items"] == [1, 2]


@pytest.mark.slow
def test_kernel_is_this_interpreter_in_the_notebook_folder(project: Project) -> None:
    results = read_results(Path(project.ok.last_line))
    assert results["executable"] == sys.executable
    assert results["cwd"] == str(project.root / "notebooks")
    # Unix sockets in a private folder: concurrent kernels cannot be handed one port
    assert results["transport"] == "ipc"


def test_kernel_sockets_fall_back_to_tcp_where_the_folder_path_is_too_long(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from tradinglib.runs.kernel import _IPC_PATH_MAX, _ipc_transport

    with _ipc_transport() as config:
        folder = Path(config.KernelManager.ip).parent
        assert config.KernelManager.transport == "ipc" and folder.is_dir()
    assert not folder.exists()  # removed afterwards
    deep = tmp_path / ("d" * _IPC_PATH_MAX)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    with _ipc_transport() as config:
        assert "KernelManager" not in config  # jupyter_client's default: TCP


@pytest.mark.slow
def test_results_record_numpy_values_and_relative_paths(project: Project) -> None:
    folder = Path(project.ok.last_line)
    results = read_results(folder)
    assert results["total_return"] == pytest.approx(0.0123)
    assert results["sharpe"] is None  # NaN
    assert results["trades"] == 3
    assert results["when"] == "2020-01-02T00:00:00+00:00"
    assert results["equity"] == "equity.csv"
    assert result_path(folder, results["equity"]).read_text().startswith(",equity")


@pytest.mark.slow
def test_executed_notebook_and_kernel_log(project: Project) -> None:
    folder = Path(project.ok.last_line)
    nb = json.loads((folder / "notebook.ipynb").read_text())
    assert nb["metadata"]["tradinglib"] == {
        "run_id": folder.name, "kind": "train", "label": "train",
        "results_file": "results.json", "manifest_file": "manifest.json"}
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and "x = 7" in "".join(injected[0]["source"])
    assert nb["metadata"]["papermill"]["exception"] is None or \
        nb["metadata"]["papermill"]["exception"] is False
    log = (folder / "kernel.log").read_text()
    assert "hello from the kernel 7" in log
    assert "raw fd 2 from the kernel process" in log  # the kernel process's own stderr


# --------------------------------------------------------------------------- failures


@pytest.mark.slow
def test_raising_cell_is_archived_failed_with_a_short_message(project: Project) -> None:
    inv = project.raises
    assert inv.code == 1
    folder = Path(inv.last_line)
    assert re.fullmatch(rf"{ID_RE}-backtest-backtest", folder.name)
    assert "cell 4 (In [4]): KeyError: 'close'" in inv.err
    assert '|     return {}["close"]' in inv.err
    assert "Traceback" not in inv.err + inv.out and "\x1b[" not in inv.err
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    error = manifest["error"]
    assert (error["stage"], error["ename"], error["evalue"]) == ("execute", "KeyError", "'close'")
    assert (error["cell"], error["execution_count"]) == (4, 4)
    assert error["source"].startswith("def broken():")
    assert "KeyError" in error["traceback"] and "\x1b[" not in error["traceback"]
    nb = json.loads((folder / "notebook.ipynb").read_text())
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    assert any(o.get("ename") == "KeyError" for o in outputs)
    assert runs.verify_run(folder) == []


def test_dead_kernel_is_archived_failed(tmp_path: Path) -> None:
    result = runs.run_notebook(NOTEBOOKS / "dies.ipynb", {}, kind="dies", label="x",
                               runs_dir=tmp_path / "runs", timeout=30, validate=None)
    assert not result.ok and result.exit_code == 1
    assert result.error is not None
    assert (result.error.stage, result.error.ename) == ("kernel", "DeadKernelError")
    assert "exit status 3" in result.error.evalue
    assert result.error.cell == 4 and result.error.source == "os._exit(3)"
    manifest = runs.read_manifest(result.path)
    assert manifest["status"] == "failed" and manifest["error"]["stage"] == "kernel"
    nb = json.loads((result.path / "notebook.ipynb").read_text())  # the partial notebook
    texts = ["".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", [])]
    assert "about to die\n" in texts
    assert runs.verify_run(result.path) == []


@pytest.mark.slow
def test_cell_timeout_is_archived_failed(tmp_path: Path) -> None:
    result = runs.run_notebook(NOTEBOOKS / "slow.ipynb", {"seconds": 60}, kind="slow",
                               label="x", runs_dir=tmp_path / "runs", timeout=1,
                               validate=None)
    assert result.error is not None
    assert (result.error.stage, result.error.ename) == ("timeout", "CellTimeoutError")
    assert "within 1 s" in result.error.evalue
    assert result.error.cell == 3 and "time.sleep(seconds)" in (result.error.source or "")
    assert result.duration_s < 30
    assert runs.read_manifest(result.path)["error"]["stage"] == "timeout"


def test_missing_kernel_is_archived_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setattr(runs.kernel, "KERNEL_NAME", "no-such-kernel")
    result = runs.run_notebook(NOTEBOOKS / "ok.ipynb", {}, kind="ok", label="x",
                               runs_dir=tmp_path, validate=None)
    assert result.error is not None
    assert (result.error.stage, result.error.ename) == ("kernel", "NoSuchKernel")
    assert "ipykernel install --sys-prefix" in result.error.evalue
    assert runs.read_manifest(result.path)["status"] == "failed"


def test_bad_parameters_are_archived_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    root = make_project(tmp_path / "p")
    monkeypatch.setenv("TRADINGLIB_ROOT", str(root))

    def validate(kind: str, values: dict[str, Any]) -> dict[str, Any]:
        if values["x"] < 0:
            raise InputError("x must be >= 0, got -1")
        return values

    monkeypatch.setattr(cli, "_validator", lambda err: validate)
    inv = invoke(["run", "train", "-p", "x", "-1"])
    assert inv.code == 2
    assert "bad parameters: x must be >= 0, got -1" in inv.err
    folder = Path(inv.last_line)
    manifest = runs.read_manifest(folder)
    assert manifest["status"] == "failed"
    assert manifest["error"]["stage"] == "parameters"
    assert yaml.safe_load((folder / "params.yaml").read_text())["x"] == -1
    assert not (folder / "notebook.ipynb").exists()  # no kernel was started


def test_output_dir_is_the_runners(tmp_path: Path) -> None:
    result = runs.run_notebook(NOTEBOOKS / "ok.ipynb", {"output_dir": "/elsewhere"},
                               kind="ok", label="x", runs_dir=tmp_path, validate=None)
    assert result.exit_code == 2 and result.error is not None
    assert "set by the runner" in result.error.evalue


def test_validated_values_are_what_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import BaseModel

    class Params(BaseModel):
        x: int = 1
        output_dir: str = "runs/lab/ok"

    def validate(kind: str, values: dict[str, Any]) -> Params:
        return Params.model_validate(values)

    monkeypatch.setattr(runs.execute, "_execute", lambda *a: None)  # the kernel is tested above
    result = runs.run_notebook(NOTEBOOKS / "ok.ipynb", {}, kind="ok", label="x",
                               runs_dir=tmp_path, validate=validate)
    assert result.ok
    manifest = runs.read_manifest(result.path)
    assert manifest["parameters"] == {"x": 1} and manifest["parameters_validated"] is True
    assert yaml.safe_load((result.path / "params.yaml").read_text()) == {"x": 1}


INTERRUPTED_CLI = """
import sys
from tradinglib import cli
cli._validator = lambda err: None
sys.exit(cli.main(["run", "train", "-p", "seconds", "60"]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "message"), [
    (signal.SIGINT, "interrupted by the user (Ctrl-C) in cell 3"),
    (signal.SIGTERM, "terminated by SIGTERM in cell 3"),
])
def test_interrupted_run_is_archived(signum: int, message: str, tmp_path: Path) -> None:
    root = make_project(tmp_path)
    shutil.copy(NOTEBOOKS / "slow.ipynb", root / "notebooks" / "train.ipynb")
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED_CLI], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "TRADINGLIB_ROOT": str(root)})
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # wait until the sleeping cell has started
        seen.append(line)
        if "[2/4]" in line:
            break
    time.sleep(0.5)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    err = "".join(seen) + err
    assert proc.returncode == 130, err
    folder = Path(out.strip().splitlines()[-1])
    assert folder.parent == root / "runs" and folder.is_dir()
    assert message in err and "Traceback" not in err
    error = runs.read_manifest(folder)["error"]
    assert (error["stage"], error["cell"]) == ("interrupted", 3)
    assert runs.verify_run(folder) == []


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("label", ["../x", "a/b", "..", ".hidden", "", "a..b", "x" * 65,
                                   "a\\b", "/abs", "a b"])
def test_bad_labels_are_refused_before_anything_is_written(label: str, tmp_path: Path) -> None:
    archive = tmp_path / "runs"
    with pytest.raises(InputError, match="run label"):
        runs.run_notebook(NOTEBOOKS / "ok.ipynb", {}, kind="ok", label=label,
                          runs_dir=archive, validate=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cli_bad_label_exits_2_and_writes_nothing(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(tmp_path / "p")
    monkeypatch.setenv("TRADINGLIB_ROOT", str(root))
    before = sorted(p.as_posix() for p in tmp_path.rglob("*"))
    inv = invoke(["run", "train", "--label", "../x"])
    assert inv.code == 2 and inv.err.startswith("error: run label '../x' is not allowed")
    assert sorted(p.as_posix() for p in tmp_path.rglob("*")) == before


def test_same_second_same_label_gets_a_suffix(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs.execute, "_utcnow", lambda: datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC))

    def refuse(kind: str, values: dict[str, Any]) -> None:
        raise InputError("refused")

    ids = [runs.run_notebook(NOTEBOOKS / "ok.ipynb", {}, kind="ok", label="same",
                             runs_dir=tmp_path, validate=refuse).run_id for _ in range(3)]
    assert ids == ["20240506T070809Z-ok-same", "20240506T070809Z-ok-same-2",
                   "20240506T070809Z-ok-same-3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ids


def test_unknown_kind_and_missing_notebook(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown run kind 'nope'"):
        runs.notebook_for("nope", tmp_path)
    with pytest.raises(InputError, match="notebook not found"):
        runs.notebook_for("train", tmp_path)
    with pytest.raises(InputError, match="run kind"):
        runs.run_notebook(NOTEBOOKS / "ok.ipynb", {}, kind="../k", label="x",
                          runs_dir=tmp_path, validate=None)
    with pytest.raises(InputError, match="timeout"):
        runs.run_notebook(NOTEBOOKS / "ok.ipynb", {}, kind="ok", label="x",
                          runs_dir=tmp_path, timeout=0, validate=None)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- paper + report


@pytest.mark.slow
def test_run_paper_runs_the_report_on_it(project: Project) -> None:
    inv = project.paper
    assert inv.code == 0, inv.err
    lines = inv.out.strip().splitlines()
    paper = Path(next(line for line in lines if line.startswith("paper run: "))
                 .removeprefix("paper run: "))
    report = Path(inv.last_line)
    assert re.fullmatch(rf"{ID_RE}-paper-paper", paper.name)
    assert re.fullmatch(rf"{ID_RE}-report-paper", report.name)
    assert f"report: {report / 'report.html'}" in lines
    results = read_results(report)
    assert results["source_run"] == paper.name
    assert results["source_total_return"] == pytest.approx(0.0123)
    assert results["final_equity"] == pytest.approx(101.5)
    manifest = runs.read_manifest(report)
    assert manifest["artifacts"]["source_run"] == paper.name
    assert manifest["parameters"]["run_dir"] == str(paper)
    assert "report.html" in manifest["files"]
    assert runs.read_manifest(paper)["status"] == "ok"


@pytest.mark.slow
def test_report_html_has_outputs_and_no_code(project: Project) -> None:
    html = (Path(project.paper.last_line) / "report.html").read_text()
    assert "Total return: +1.23% over 3 trades" in html
    assert "data:image/png;base64," in html
    assert "read_results(run_dir)" not in html and "record_results" not in html


@pytest.mark.slow
def test_render_html(tmp_path: Path, project: Project) -> None:
    target = runs.render_html(Path(project.ok.last_line) / "notebook.ipynb",
                              tmp_path / "ok.html")
    html = target.read_text()
    assert "<img" in html and "data:image/png;base64," in html
    assert "record_results(" not in html
    with pytest.raises(InputError, match="notebook not found"):
        runs.render_html(tmp_path / "missing.ipynb", tmp_path / "x.html")
    (tmp_path / "bad.ipynb").write_text("not json")
    with pytest.raises(InputError, match="not a valid notebook"):
        runs.render_html(tmp_path / "bad.ipynb", tmp_path / "x.html")


# --------------------------------------------------------------------------- the archive


@pytest.mark.slow
def test_runs_list(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADINGLIB_ROOT", str(project.root))
    inv = invoke(["runs", "list"])
    assert inv.code == 0
    for line in (project.ok, project.raises, project.paper):
        assert Path(line.last_line).name in inv.out
    row = next(line for line in inv.out.splitlines() if Path(project.ok.last_line).name in line)
    assert "train" in row and " ok " in row and "+1.23%" in row and "n/a" in row
    row = next(line for line in inv.out.splitlines()
               if Path(project.raises.last_line).name in line)
    assert "failed" in row and "KeyError" in row
    only = invoke(["runs", "list", "--kind", "paper", "--last", "1"])
    assert "-paper-paper" in only.out and "-train-" not in only.out


def test_runs_list_shows_incomplete_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.setenv("TRADINGLIB_ROOT", str(tmp_path))
    (tmp_path / "runs" / ".tmp-20240101T000000Z-train-x").mkdir(parents=True)
    (tmp_path / "runs" / "not-a-run").mkdir()
    infos = runs.list_runs(tmp_path / "runs")
    assert [(i.run_id, i.status) for i in infos] == [("20240101T000000Z-train-x", "incomplete")]
    assert "incomplete" in invoke(["runs", "list"]).out
    assert invoke(["runs", "list"]).code == 0


@pytest.mark.slow
def test_runs_show(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADINGLIB_ROOT", str(project.root))
    run_id = Path(project.ok.last_line).name
    inv = invoke(["runs", "show", run_id[:-3]])
    assert inv.code == 0, inv.err
    assert f"run:        {run_id}" in inv.out
    assert "status:     ok" in inv.out
    assert "  x: 7" in inv.out  # parameters
    assert "  total_return: +1.23%" in inv.out  # results
    assert "tables/trades.csv" in inv.out
    assert "integrity:  every file matches its sha256" in inv.out
    failed = invoke(["runs", "show", Path(project.raises.last_line).name])
    assert "error:      [execute] cell 4: KeyError: 'close'" in failed.out
    last = invoke(["runs", "show", "last"])
    assert last.code == 0 and f"run:        {Path(project.paper.last_line).name}" in last.out


@pytest.mark.slow
def test_runs_show_errors(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADINGLIB_ROOT", str(project.root))
    (project.runs_dir / "lab").mkdir(exist_ok=True)  # notebooks run by hand write here
    assert runs.find_run(project.runs_dir, "last") == Path(project.paper.last_line)
    assert invoke(["runs", "show", "lab"]).code == 2
    ambiguous = invoke(["runs", "show", "2"])
    assert ambiguous.code == 2 and "matches" in ambiguous.err
    missing = invoke(["runs", "show", "19990101"])
    assert missing.code == 2 and "no run '19990101'" in missing.err


@pytest.mark.slow
def test_verify_run_detects_changes(project: Project, tmp_path: Path) -> None:
    copy = tmp_path / Path(project.ok.last_line).name
    shutil.copytree(project.ok.last_line, copy)
    (copy / "equity.csv").chmod(0o644)
    (copy / "equity.csv").write_text("tampered\n")
    (copy / "extra.txt").write_text("x")
    (copy / "tables" / "trades.csv").unlink()
    assert runs.verify_run(copy) == [
        "equity.csv: changed (sha256 differs from the manifest)",
        "tables/trades.csv: missing",
        "extra.txt: added after the run",
    ]


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(("text", "value"), [
    ("5", 5), ("-2", -2), ("1_000", 1000), ("0x10", 16), ("0.5", 0.5), ("3e-4", 3e-4),
    ("1E5", 1e5), (".5", 0.5), ("true", True), ("False", False), ("null", None),
    ("None", None), ("~", None), ("no", "no"), ("on", "on"), ("010", "010"),
    ("2018-01-02", "2018-01-02"), ("09:30", "09:30"), ("[1, 2]", [1, 2]),
    ("{a: 1}", {"a": 1}), ("googl-daily", "googl-daily"), ("", ""), ("a: b: c", "a: b: c"),
    ("'5'", "'5'"),
])
def test_parse_value(text: str, value: object) -> None:
    parsed = runs.parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_parse_value_special_floats() -> None:
    assert math.isinf(runs.parse_value(".inf")) and math.isnan(runs.parse_value(".nan"))


def test_load_params(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text("# comment\nsteps: 20000\nlr: 3e-4\nstart: 2017-01-03\nflag: yes\n")
    assert runs.load_params(file, [("steps", "5"), ("seed", "1")]) == {
        "steps": 5, "lr": 3e-4, "start": "2017-01-03", "flag": "yes", "seed": 1}
    (tmp_path / "empty.yaml").write_text("")
    assert runs.load_params(tmp_path / "empty.yaml") == {}


@pytest.mark.parametrize(("content", "message"), [
    (None, "parameter file not found"),
    ("- a\n- b\n", "is a mapping of names to values"),
    ("a: [1,\n", "not valid YAML"),
    ("1x: 2\n", "not a Python identifier"),
])
def test_load_params_errors(content: str | None, message: str, tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    if content is not None:
        file.write_text(content)
    with pytest.raises(InputError, match=message):
        runs.load_params(file)


def test_validate_label_accepts_plain_names() -> None:
    for label in ("train", "googl-2024.v2", "A_1", "x" * 64):
        assert runs.validate_label(label) == label


def test_run_id_for() -> None:
    assert runs.run_id_for("/r/runs/.tmp-20240101T000000Z-paper-x") == \
        "20240101T000000Z-paper-x"
    assert runs.run_id_for("runs/20240101T000000Z-paper-x") == "20240101T000000Z-paper-x"


@pytest.mark.parametrize(("status", "text"), [
    (None, ""), (3, " (exit status 3)"),
    (-9, " (killed by SIGKILL, often the out-of-memory killer)"),
    (-15, " (killed by SIGTERM)"),
])
def test_describe_exit(status: int | None, text: str) -> None:
    assert runs.describe_exit(status) == text


# --------------------------------------------------------------------------- results


class Side(enum.Enum):
    BUY = "buy"


@dataclasses.dataclass(frozen=True)
class Figure:
    name: str
    value: float


def test_record_and_read_results_round_trip(tmp_path: Path) -> None:
    run = tmp_path / "run"
    stamp = pd.Timestamp("2024-01-02 09:30", tz="America/New_York")
    merged = record_results(
        run, f32=np.float32(0.25), i64=np.int64(7), flag=np.bool_(True), nan=float("nan"),
        inf=np.float64("inf"), when=stamp, nat=pd.NaT, na=pd.NA,
        day=pd.Timestamp("2024-01-02").date(), wait=pd.Timedelta(minutes=1, seconds=30),
        inside=run / "trades.csv", outside=tmp_path / "elsewhere.csv",
        text_path=str(run / "equity.csv"), series=pd.Series([1.5, np.nan], index=["a", "b"]),
        array=np.array([[1, 2], [3, 4]]), nested={"m": {"sharpe": np.float64(1.25)}},
        side=Side.BUY, figure=Figure("x", 0.5), tags={"b", "a"}, dt64=np.datetime64("2024-01-02"),
        none=None,
    )
    expected = {
        "f32": 0.25, "i64": 7, "flag": True, "nan": None, "inf": None,
        "when": "2024-01-02T09:30:00-05:00", "nat": None, "na": None, "day": "2024-01-02",
        "wait": 90.0, "inside": "trades.csv", "outside": (tmp_path / "elsewhere.csv").as_posix(),
        "text_path": "equity.csv", "series": {"a": 1.5, "b": None},
        "array": [[1, 2], [3, 4]], "nested": {"m": {"sharpe": 1.25}}, "side": "buy",
        "figure": {"name": "x", "value": 0.5}, "tags": ["a", "b"],
        "dt64": "2024-01-02T00:00:00", "none": None,
    }
    assert merged == expected
    assert read_results(run) == expected
    assert type(read_results(run)["i64"]) is int
    record_results(run, i64=8, extra="x")
    again = read_results(run)
    assert again["i64"] == 8 and again["extra"] == "x" and again["f32"] == 0.25
    assert sorted(p.name for p in run.iterdir()) == ["results.json"]
    assert result_path(run, "trades.csv") == run.resolve() / "trades.csv"
    assert result_path(run, "/abs/x.csv") == Path("/abs/x.csv")


def test_record_results_refuses_what_json_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"results\['frame'\]: a DataFrame"):
        record_results(tmp_path, frame=pd.DataFrame({"a": [1]}))
    with pytest.raises(InputError, match=r"results\['obj'\]: cannot store a builtins.object"):
        record_results(tmp_path, obj=object())
    with pytest.raises(InputError, match=r"results\['deep'\]\['k'\]\[0\]: cannot store"):
        record_results(tmp_path, deep={"k": [object()]})
    with pytest.raises(InputError, match="needs output_dir"):
        record_results(None, x=1)  # type: ignore[arg-type]
    assert not (tmp_path / "results.json").exists()  # nothing half-written


def test_read_results_errors(tmp_path: Path) -> None:
    assert read_results(tmp_path) == {}
    with pytest.raises(InputError, match="no such run folder"):
        read_results(tmp_path / "missing")
    (tmp_path / "results.json").write_text("[1]")
    with pytest.raises(StopError, match="holds a JSON object"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text("{")
    with pytest.raises(StopError, match="unreadable results file"):
        read_results(tmp_path)


def test_to_jsonable_without_a_base_keeps_paths_absolute() -> None:
    assert to_jsonable(Path("/a/b")) == "/a/b"
    assert to_jsonable({1: np.int8(2)}) == {"1": 2}
