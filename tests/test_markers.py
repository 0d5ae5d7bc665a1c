"""The suite's markers (tests/conftest.py): every module is unit, integration or e2e."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import TESTS, UNIT_MODULES, kind_of


def test_kinds_by_path() -> None:
    assert kind_of("e2e/test_rollback.py") == "e2e"
    assert kind_of("core/test_stats.py") == "unit"
    assert kind_of("control/test_phases.py") == "unit"
    assert kind_of("control/test_sessions.py") == "integration"  # real servers
    assert kind_of("control/test_new_module.py") == "integration"  # until listed as unit


def test_listed_unit_modules_exist_and_start_no_server() -> None:
    for module in sorted(UNIT_MODULES - {"test_markers.py"}):
        text = (TESTS / module).read_text()
        for starts_something in ("start_router", "start_control", "start_simulator", "subprocess"):
            assert starts_something not in text, module


def test_the_suite_has_all_three_kinds() -> None:
    kinds = {kind_of(p.relative_to(TESTS).as_posix()) for p in Path(TESTS).rglob("test_*.py")}
    assert kinds == {"unit", "integration", "e2e"}
