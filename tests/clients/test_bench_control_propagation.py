"""A small run of bench/control_propagation.py, so the benchmark keeps working."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import control_propagation


def test_a_small_propagation_run_reports_every_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "result.json"
    argv = ["--routers", "3", "--changes", "4", "--workdir", str(tmp_path), "--json", str(out)]
    assert control_propagation.main(argv) == 0
    result = json.loads(out.read_text())
    assert (result["routers"], result["changes"], result["verdict"]) == (3, 4, "PASS")
    assert [s["weight"] for s in result["samples"]] == [30, 70, 30, 70]
    versions = [s["version"] for s in result["samples"]]
    assert versions == list(range(versions[0], versions[0] + 4))
    for stats in result["ms"].values():
        assert 0 <= stats["p50"] <= stats["p99"] <= stats["max"]
    assert result["machine"]["cpu_count"] >= 1
    printed = capsys.readouterr().out
    assert "goal: p99 from SetWeight returning to all 3 routers applied < 100 ms: PASS" in printed
    assert list(tmp_path.iterdir()) == [out]  # the temp dir is gone


def test_summary_uses_the_core_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    stats = control_propagation.summary(values)
    # llmcore.stats.percentile (linear, numpy's default), not nearest-rank (50.0 / 99.0).
    assert stats["p50"] == pytest.approx(50.5)
    assert stats["p99"] == pytest.approx(99.01)
    assert (stats["max"], stats["mean"]) == (100.0, 50.5)
    with pytest.raises(ValueError, match="no samples"):
        control_propagation.summary([])
