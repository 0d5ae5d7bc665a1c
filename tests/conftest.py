"""Markers for the whole suite, by module: ``unit`` (no server, no process, no socket: plain
logic), ``integration`` (real servers on port 0, simulators, subprocesses, real SQLite files) and
``e2e`` (the whole stack: control service, routers, simulators together).

    pytest -m unit              # seconds: the decision logic
    pytest -m "not e2e"         # all but the full-stack runs

Test order is random (pytest-randomly, seed printed in the header): reproduce a failing order
with ``--randomly-seed=<seed>`` (or ``--randomly-seed=last``), run in file order with
``-p no:randomly``.

The tables are here, in one place, rather than as ``pytestmark`` lines in each module, so a new
module is an integration test until it is listed as unit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

# Modules that test plain logic only (relative to tests/); every file in a listed folder counts.
UNIT_FOLDERS = ("core/",)
UNIT_MODULES = frozenset(
    {
        "test_docs.py",
        "test_markers.py",
        "test_vocabulary.py",
        "clients/test_llm_client_options.py",
        "clients/test_llm_client_surface.py",
        "control/test_gpu_nvml.py",
        "control/test_gpu_selector.py",
        "control/test_gpu_stability.py",
        "control/test_phases.py",
        "control/test_rollback_rules.py",
        "control/test_state.py",
        "control/test_stats_windows.py",
        "control/test_validation.py",
        "router/test_shadow_compare.py",
        "router/test_shadow_stats.py",
        "router/test_split.py",
        "tools/test_restart_policy.py",
    }
)
E2E_FOLDERS = ("e2e/",)


def kind_of(relative: str) -> str:
    """``unit``, ``integration`` or ``e2e`` for a test module's path relative to tests/."""
    if relative.startswith(E2E_FOLDERS):
        return "e2e"
    if relative in UNIT_MODULES or relative.startswith(UNIT_FOLDERS):
        return "unit"
    return "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = sorted(m for m in UNIT_MODULES if not (TESTS / m).is_file())
    if missing:
        raise pytest.UsageError(
            f"tests/conftest.py lists unit modules that do not exist: {missing}"
        )
    for item in items:
        relative = item.path.resolve().relative_to(TESTS).as_posix()
        item.add_marker(getattr(pytest.mark, kind_of(relative)))
