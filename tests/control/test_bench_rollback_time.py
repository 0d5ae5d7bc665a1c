"""A small run of bench/rollback_time.py, so the benchmark keeps working."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import rollback_time


def test_a_small_rollback_time_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "result.json"
    argv = [
        "--triggers",
        "health",
        "--runs",
        "1",
        "--routers",
        "2",
        "--concurrency",
        "2",
        "--evaluation-interval",
        "0.05",
        "--report-interval",
        "0.05",
        "--warmup",
        "0.1",
        "--json",
        str(out),
    ]
    assert rollback_time.main(argv) == 0
    result = json.loads(out.read_text())
    assert (result["routers"], result["runs"], result["verdict"]) == (2, 1, "PASS")
    (sample,) = result["samples"]
    assert sample["trigger"] == "health"
    assert 0 <= sample["condition_to_commit_s"] <= sample["condition_to_applied_s"] < 2
    assert "| health |" in capsys.readouterr().out


def test_unknown_triggers_are_refused() -> None:
    with pytest.raises(SystemExit):
        rollback_time.parse(["--triggers", "nope"])
