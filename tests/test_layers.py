"""The import contracts of ``make lint`` (pyproject ``[tool.importlinter]``) are real: a real
``lint-imports`` run over a copy of the packages keeps them, and fails on a deliberate violation
written into that copy, naming the offending import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "llmcore",
    "router_service",
    "control_service",
    "clients",
    "llmsim",
    "llmtools",
    "bench",
)


def _lint_imports() -> str:
    exe = Path(sys.executable).parent / "lint-imports"
    found = shutil.which("lint-imports") if not exe.exists() else str(exe)
    if found is None:
        raise AssertionError("lint-imports is not installed: pip install -e '.[dev]'")
    return found


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages and pyproject.toml, copied: violations are written here, never in the repo."""
    root = tmp_path_factory.mktemp("layers")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def _run(tree: Path) -> subprocess.CompletedProcess[str]:
    # The copy first on the path, so the analysis reads it and not the installed packages.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [_lint_imports(), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_contracts_hold_for_the_repository(tree: Path) -> None:
    result = _run(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout
    assert str(tree) in _analysed_path(tree)


def _analysed_path(tree: Path) -> str:
    """Where Python finds the packages under the test's PYTHONPATH (proves the copy is read)."""
    out = subprocess.run(
        [sys.executable, "-c", "import control_service; print(control_service.__file__)"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken", "message"),
    [
        (
            "control_service/_violation.py",
            "from router_service import values\n",
            "Layers: tools over clients over services",
            "control_service is not allowed to import router_service",
        ),
        (
            "router_service/_violation.py",
            "import control_service.phases\n",
            "Layers: tools over clients over services",
            "router_service is not allowed to import control_service",
        ),
        (
            "llmcore/_violation.py",
            "import router_service.errors\n",
            "Layers: tools over clients over services",
            "llmcore is not allowed to import router_service",
        ),
        (
            "clients/llm/_violation.py",
            "import control_service.errors\n",
            "The client library and the CLI import no service",
            "clients.llm is not allowed to import control_service",
        ),
        (
            "llmsim/_violation.py",
            "import router_service.values\n",
            "The simulator imports nothing of the product but the core",
            "llmsim is not allowed to import router_service",
        ),
        (
            "control_service/phases.py",
            "import grpc\n",
            "Decision modules import neither gRPC nor an HTTP client",
            "control_service.phases is not allowed to import grpc",
        ),
        (
            "router_service/placement.py",
            "import router_service.providers\n",  # httpx, indirectly
            "Decision modules import neither gRPC nor an HTTP client",
            "router_service.placement is not allowed to import httpx",
        ),
    ],
)
def test_a_deliberate_violation_fails_lint_imports(
    tree: Path, module: str, line: str, broken: str, message: str
) -> None:
    path = tree / module
    original = path.read_text() if path.exists() else None
    path.write_text((original or '"""A deliberate layer violation."""\n') + line)
    try:
        result = _run(tree)
    finally:
        if original is None:
            path.unlink()
        else:
            path.write_text(original)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    verdicts = [ln for ln in out.splitlines() if ln.startswith(broken)]
    assert verdicts, out
    assert " BROKEN" in verdicts[0], out
    assert message in out, out
