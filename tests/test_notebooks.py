"""The notebooks: their layout (fast), and real runs in a Jupyter kernel through papermill.

Kernel runs are marked ``slow``. Each uses the default parameters of its notebook except
where a run must stay quick and inside tmp: the model (the session's tiny model, or a
256-step training), the output folder, and the report's paper run folder. Parameter files
are run too (``params/*.yaml`` with the same overrides), once through papermill's command
line exactly as the README shows it.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from conftest import missing

from tradinglib.modelcard import ModelCard, card_path
from tradinglib.params import PARAMS_MODELS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
REGRESSION = Path(__file__).resolve().parent / "notebooks" / "regression"
KINDS = {"train": "train.ipynb", "backtest": "backtest.ipynb",
         "paper": "paper_session.ipynb", "report": "report.ipynb",
         "explore": "explore.ipynb"}
TIMEOUT = 300



def _needs(module: str) -> None:
    pytest.importorskip(module, reason=f"{module} not available yet")


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _parameters_cell(nb: nbformat.NotebookNode) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{len(tagged)} cells tagged parameters"
    return tagged[0]


def _defaults(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """The parameters cell's assignments, evaluated as literals."""
    tree = ast.parse(nb.cells[_parameters_cell(nb)].source)
    values: dict[str, Any] = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.dump(node)
        target = node.targets[0]
        assert isinstance(target, ast.Name)
        values[target.id] = ast.literal_eval(node.value)
    return values


# ------------------------------------------------------------------ layout (fast)


def test_the_six_notebooks_and_nothing_else() -> None:
    # sweep_report.ipynb is run by `tradinglib sweep` (tests/test_sweep.py), not `run`
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(
        [*KINDS.values(), "sweep_report.ipynb"])


@pytest.mark.parametrize("kind", KINDS)
def test_layout(kind: str) -> None:
    nb = _read(KINDS[kind])
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    assert nb.metadata.get("title")  # the HTML page title
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "clear outputs"
    index = _parameters_cell(nb)
    assert "ParameterScope(globals())" in nb.cells[index - 1].source
    assert nb.cells[index + 1].source.startswith(f'params = scope.validate("{kind}")')
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("kind", KINDS)
def test_parameters_cell_defaults_equal_the_model_defaults(kind: str) -> None:
    defaults = _defaults(_read(KINDS[kind]))
    fields = PARAMS_MODELS[kind].model_fields
    assert sorted(defaults) == sorted(fields)
    for name, value in defaults.items():
        assert value == fields[name].default, name


@pytest.mark.parametrize("kind", KINDS)
def test_papermill_sees_every_parameter(kind: str) -> None:
    import papermill

    found = papermill.inspect_notebook(str(NOTEBOOKS / KINDS[kind]))
    assert sorted(found) == sorted(PARAMS_MODELS[kind].model_fields)


@pytest.mark.parametrize("kind", KINDS)
def test_notebooks_hold_no_logic(kind: str) -> None:
    """Style item 9: no functions, classes or loops in a notebook; the library has them."""
    for cell in _read(KINDS[kind]).cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines()
                           if not line.startswith("%"))
        for node in ast.walk(ast.parse(source)):
            assert not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.For | ast.While
                                  | ast.Lambda), f"{kind}: {ast.dump(node)[:80]}"


@pytest.mark.parametrize("kind", ["train", "backtest", "paper", "report"])
def test_parameter_files_name_only_parameters(kind: str) -> None:
    name = "paper" if kind == "paper" else kind
    values = yaml.safe_load((ROOT / "params" / f"{name}.yaml").read_text())
    assert set(values) <= set(PARAMS_MODELS[kind].model_fields) - {"output_dir"}


# ------------------------------------------------------------------ kernel runs


def _execute(kind: str, parameters: dict[str, Any], out: Path, *,
             cwd: Path = NOTEBOOKS) -> nbformat.NotebookNode:
    import papermill

    out.parent.mkdir(parents=True, exist_ok=True)
    nb = papermill.execute_notebook(
        str(NOTEBOOKS / KINDS[kind]), str(out), parameters=parameters, cwd=str(cwd),
        kernel_name="python3", progress_bar=False, log_output=False,
        execution_timeout=TIMEOUT)
    return nb


def _outputs(nb: nbformat.NotebookNode, mime: str) -> list[Any]:
    return [o.data[mime] for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type in ("display_data", "execute_result") and mime in o.data]


def _text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                parts.append(o.text)
            elif o.output_type in ("display_data", "execute_result"):
                parts.append(o.data.get("text/markdown", o.data.get("text/plain", "")))
    return "\n".join(parts)


def _results(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "results.json").read_text())
    return data


def _yaml(name: str, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((ROOT / "params" / f"{name}.yaml").read_text())
    return {**values, **overrides}


@pytest.fixture(scope="module")
def paper_run(tiny_model: tuple[Path, ModelCard],
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A paper session run through paper_session.ipynb with its defaults (tiny model)."""
    _needs("tradinglib.session")
    _needs("tradinglib.results")
    folder = tmp_path_factory.mktemp("paper") / "run"
    nb = _execute("paper", {"model_path": str(tiny_model[0]), "output_dir": str(folder)},
                  folder.parent / "paper.ipynb")
    assert len(_outputs(nb, "image/png")) == 2
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"stepz": 5}, "unknown parameter 'stepz' for train (did you mean 'steps'?); valid: "),
        ({"steps": "many"}, "invalid train parameter: steps='many': Input should be a valid "
                            "integer"),
        ({"holdout": 1.5, "reuse": "no"}, "holdout=1.5: Input should be less than 1; "
                                          "reuse='no': Input should be a valid boolean"),
    ],
)
def test_bad_parameters_stop_at_the_validation_cell(parameters: dict[str, Any], expected: str,
                                                    tmp_path: Path) -> None:
    from papermill.exceptions import PapermillExecutionError

    out = tmp_path / "bad.ipynb"
    with pytest.raises(PapermillExecutionError) as info:
        _execute("train", parameters, out)
    assert info.value.ename == "InputError"
    assert expected in info.value.evalue
    nb = nbformat.read(out, as_version=4)
    failed = [i for i, c in enumerate(nb.cells)
              if any(o.output_type == "error" for o in c.get("outputs", []))]
    assert len(failed) == 1 and 'scope.validate("train")' in nb.cells[failed[0]].source
    later = [c for c in nb.cells[failed[0] + 1:] if c.cell_type == "code"]
    assert later and all(c.execution_count is None for c in later)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_train_then_reuse_from_the_parameter_file(tmp_path: Path) -> None:
    _needs("tradinglib.results")
    model = tmp_path / "models" / "nb.zip"
    nb = _execute("train", {"steps": 256, "model_path": str(model),
                            "output_dir": str(tmp_path / "train")}, tmp_path / "train.ipynb")
    results = _results(tmp_path / "train")
    assert results["kind"] == "train" and results["reused"] is False
    assert model.is_file() and card_path(model).is_file()
    assert set(results["metrics"]) == {"train", "holdout"}
    assert "trained: " in _text(nb) and len(_outputs(nb, "image/png")) == 2
    # the same training again, from params/train.yaml: the model is reused
    nb = _execute("train", _yaml("train", steps=256, model_path=str(model),
                                 output_dir=str(tmp_path / "again")),
                  tmp_path / "again.ipynb", cwd=ROOT)
    assert _results(tmp_path / "again")["reused"] is True
    assert "reused: " in _text(nb)


@pytest.mark.slow
def test_backtest_with_defaults(tiny_model: tuple[Path, ModelCard], tmp_path: Path) -> None:
    _needs("tradinglib.results")
    out = tmp_path / "backtest"
    nb = _execute("backtest", {"model_path": str(tiny_model[0]), "output_dir": str(out)},
                  tmp_path / "backtest.ipynb", cwd=ROOT)
    results = _results(out)
    assert results["kind"] == "backtest"
    assert results["files"] == ["decisions.csv", "equity.csv", "metrics.json",
                                "risk_events.csv", "trades.csv"]
    holdout = tiny_model[1].holdout_data
    assert holdout is not None and results["first"][:10] == holdout.start[:10]
    assert results["metrics"]["bars"] == holdout.rows - 1  # the last bar only marks
    assert len(_outputs(nb, "image/png")) == 3


@pytest.mark.slow
def test_backtest_with_papermill_command_line(tiny_model: tuple[Path, ModelCard],
                                              tmp_path: Path) -> None:
    """Plain papermill as the README shows it, with the parameter file."""
    _needs("tradinglib.results")
    out = tmp_path / "backtest"
    done = subprocess.run(
        [sys.executable, "-m", "papermill", "notebooks/backtest.ipynb",
         str(tmp_path / "out.ipynb"), "-f", "params/backtest.yaml", "--cwd", "notebooks",
         "-p", "model_path", str(tiny_model[0]), "-p", "output_dir", str(out),
         "-p", "start", "2018-01-02", "--no-progress-bar"],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = _results(out)
    assert results["first"].startswith("2018-01-02")
    assert results["params"]["start"] == "2018-01-02"


@pytest.mark.slow
def test_explore_with_defaults(tmp_path: Path) -> None:
    nb = _execute("explore", {"output_dir": str(tmp_path / "explore")},
                  tmp_path / "explore.ipynb")
    assert len(_outputs(nb, "image/png")) == 3  # price, correlations, equity
    text = _text(nb)
    assert "rows:      2335" in text and "dist_sma_50" in text


@pytest.mark.slow
def test_paper_session_with_defaults(paper_run: Path,
                                     tiny_model: tuple[Path, ModelCard]) -> None:
    results = _results(paper_run)
    assert results["kind"] == "paper" and results["timezone"] == "America/New_York"
    assert results["summary"]["cycles"] == 60  # 30 minutes of 30-second cycles
    assert results["model_sha256"] == tiny_model[1].sha256
    assert (paper_run / "journal.sqlite").is_file()
    assert set(results["files"]) <= {p.name for p in paper_run.iterdir()}


@pytest.mark.slow
def test_paper_session_from_the_parameter_file(tiny_model: tuple[Path, ModelCard],
                                               tmp_path: Path) -> None:
    _needs("tradinglib.session")
    _needs("tradinglib.results")
    out = tmp_path / "paper"
    _execute("paper", _yaml("paper", model_path=str(tiny_model[0]), output_dir=str(out),
                            session_minutes=5.0, start="2017-06-01"),
             tmp_path / "paper.ipynb")
    summary = _results(out)["summary"]
    assert summary["cycles"] == 10 and summary["first_bar"].startswith("2017-06-01")


@pytest.mark.slow
def test_report_with_defaults(paper_run: Path, tmp_path: Path) -> None:
    from nbconvert import HTMLExporter

    out = tmp_path / "report"
    nb = _execute("report", {"run_dir": str(paper_run), "output_dir": str(out)},
                  tmp_path / "report.ipynb")
    results = _results(out)
    assert results["kind"] == "report" and results["agreement"] == 1.0
    assert results["trades"] == _results(paper_run)["summary"]["trades"]
    assert len(_outputs(nb, "image/png")) == 3  # equity, position, comparison
    text = _text(nb)
    assert "**The session " in text and "No manifest" in text
    html, _ = HTMLExporter(exclude_input=True).from_notebook_node(nb)
    assert "scope.validate" not in html and "import " not in html  # code hidden
    assert html.count("<img") >= 3 and "Paper session versus backtest" in html


@pytest.mark.slow
def test_report_from_the_parameter_file_without_backtest(paper_run: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "report"
    nb = _execute("report", _yaml("report", run_dir=str(paper_run), backtest=False,
                                  output_dir=str(out)), tmp_path / "report.ipynb", cwd=ROOT)
    assert _results(out)["agreement"] is None
    assert "Not compared in this report" in _text(nb)
    assert len(_outputs(nb, "image/png")) == 2


# ------------------------------------------------------------------ regression


@pytest.mark.slow
def test_regression_outputs(nb_regression: Any) -> None:
    """Bars summary, a features table and a scripted backtest, output by output."""
    nb_regression.exec_cwd = str(REGRESSION)
    nb_regression.exec_timeout = TIMEOUT
    nb_regression.diff_ignore = (
        "/metadata/language_info",
        "/cells/*/metadata",
        "/cells/*/execution_count",
        "/cells/*/outputs/*/execution_count",
        "/cells/*/outputs/*/data/image/png",
        "/cells/*/outputs/*/traceback",
    )
    nb_regression.diff_replace = (
        # timestamps of a run, should a cell ever print one
        ("/cells/*/outputs/*/text", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+", "TIMESTAMP"),
    )
    nb_regression.check(str(REGRESSION / "bars_features.ipynb"))


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        missing("headless Chromium is not installed (Debian package 'chromium'; "
                    ".ci/run installs it)")
    return exe


@pytest.mark.slow
def test_report_html_opens_offline_in_headless_chromium(paper_run: Path,
                                                        tmp_path: Path) -> None:
    """The rendered report is one self-contained page: a real browser with no network
    loads it with its figures (embedded PNGs) and tables, and draws it."""
    import numpy as np
    from matplotlib.image import imread

    from tradinglib.runs import render_html

    chromium = _chromium()
    out = tmp_path / "report"
    _execute("report", {"run_dir": str(paper_run), "output_dir": str(out)},
             tmp_path / "report.ipynb")
    html = render_html(tmp_path / "report.ipynb", tmp_path / "report.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--proxy-server=127.0.0.1:9", f"--user-data-dir={tmp_path}/ud",
             "--window-size=1280,3000", "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", html.as_uri()], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert "Paper trading session report" in page
    assert page.count('src="data:image/png;base64,') >= 3  # figures embedded, not linked
    assert page.count("<table") >= 5
    assert "http://" not in page.split("<body", 1)[1].replace("http://www.w3.org", "")
    shot = tmp_path / "report.png"
    done = subprocess.run([chromium, *flags, f"--screenshot={shot}", html.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = imread(shot)
    assert pixels.shape[:2] == (3000, 1280)
    assert float(np.std(pixels[..., :3])) > 0.05  # drawn content, not a blank page


@pytest.mark.slow
def test_kernel_killed_mid_session_is_archived_failed_with_a_readable_journal(
        tiny_model: tuple[Path, ModelCard], tmp_path: Path) -> None:
    """The paper notebook through the runner; its kernel is SIGKILLed while the session
    trades. The run is archived as failed and the journal holds the cycles done so far."""
    import threading
    import time

    import psutil

    from tradinglib.journal import JournalError, read_journal
    from tradinglib.runs import run_notebook

    runs_dir = tmp_path / "runs"
    params = {"model_path": str(tiny_model[0]), "cycle_seconds": 0.2, "speed": 1.0,
              "session_minutes": 1.0}  # 300 cycles of 0.2 s: far longer than the test waits
    killed = threading.Event()

    def kill_kernel_mid_session() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed.is_set():
            time.sleep(0.2)
            journals = list(runs_dir.glob(".tmp-*/journal.sqlite"))
            try:  # the journal may be mid-creation, a child may exit while listed
                if not journals or len(read_journal(journals[0])["decisions"]) < 5:
                    continue
                for child in psutil.Process().children(recursive=True):
                    if "ipykernel" in " ".join(child.cmdline()):
                        child.kill()
                        killed.set()
            except (JournalError, psutil.Error):
                continue

    killer = threading.Thread(target=kill_kernel_mid_session, daemon=True)
    killer.start()
    result = run_notebook(NOTEBOOKS / KINDS["paper"], params, kind="paper", label="killed",
                          runs_dir=runs_dir, timeout=TIMEOUT)
    killer.join(timeout=30)
    assert killed.is_set()
    assert result.status == "failed" and result.exit_code == 1
    assert result.error is not None and result.error.stage == "kernel"
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    decisions = read_journal(result.path / "journal.sqlite")["decisions"]
    assert len(decisions) >= 5
    assert decisions["cycle"].tolist() == list(range(len(decisions)))  # no hole, no torn row
