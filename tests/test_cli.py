"""The command line: real commands, their output and their errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tradinglib.cli import main
from tradinglib.features import FEATURE_NAMES
from tradinglib.modelcard import card_path


def test_data_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "googl-daily" in out and "eurusd-hourly" in out


def test_data_info_builtin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", "eurusd-hourly"]) == 0
    out = capsys.readouterr().out
    assert "1 hour" in out and "rows:" in out


def test_features_lists_all_26(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["features"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in FEATURE_NAMES)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "info", "nosuchsource"], "built-in names are: googl-daily"),
        (["data", "info", "missing.csv"], "file not found"),
        (["train", "--data", "googl-daily", "--out", "m.pt"], r"must end in .zip"),
        (["train", "--data", "googl-daily", "--out", "m.zip", "--holdout", "2"],
         "holdout fraction"),
    ],
)
def test_bad_input_exits_2_with_a_message(argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_train_writes_model_and_card(tmp_path: Path) -> None:
    out = tmp_path / "models" / "cli.zip"
    proc = subprocess.run(
        [sys.executable, "-m", "tradinglib.cli", "train", "--data", "googl-daily",
         "--steps", "256", "--seed", "1", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    card = json.loads(card_path(out).read_text())
    assert card["total_timesteps"] == 256 and card["seed"] == 1
    assert proc.stdout.strip().splitlines()[-1] == f"card:  {card_path(out)}"
    assert "holdout" in proc.stdout and "total_return" in proc.stdout


def test_unwritable_output_folder_is_an_error_line(tmp_path: Path,
                                                   tiny_model: tuple[Path, object],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["backtest", "--model", str(tiny_model[0]), "--data", "googl-daily",
                 "--start", "2018-06-01", "--out", str(blocker / "results")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
