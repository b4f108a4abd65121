"""The install files agree with each other and with the README."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_pyproject_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = [r for r in pip_section if not r.startswith("-")]
    # torch comes from the pin file in both installs
    assert sorted(r for r in declared if _name(r) != "torch") == sorted(listed)
    assert "-r requirements/torch.txt" in pip_section
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_torch_is_pinned_in_one_place() -> None:
    assert (ROOT / "requirements" / "torch.txt").read_text().split() == ["torch==2.13.0"]
    for name in ("Makefile", "pyproject.toml", "environment.yml", "README.md"):
        text = (ROOT / name).read_text()
        assert "torch==2" not in text, f"{name} repeats the torch pin"
    assert "requirements/torch.txt" in (ROOT / "Makefile").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "tradinglib"
    assert exe.is_file(), f"no console script beside {sys.executable}"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("data", "features", "config", "train", "demo"):
        assert command in proc.stdout


def test_package_is_typed() -> None:
    assert (ROOT / "tradinglib" / "py.typed").is_file()
