"""Settings sources and the ``llm-control`` process: ready line, SIGTERM, state on disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from control_service.settings import ControlSettings

REPO = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    s = ControlSettings()
    assert (s.port, s.db_path, s.auth_token, s.tls) == (50061, Path("./.run/control.db"), "", False)
    assert s.split_steps == [10, 30, 70]


def test_environment_and_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "control.yaml"
    cfg.write_text("port: 6000\nauth_token: from-yaml\nsplit_steps: [5, 50]\n")
    monkeypatch.setenv("LLM_CONTROL_CONFIG_FILE", str(cfg))
    monkeypatch.setenv("LLM_CONTROL_AUTH_TOKEN", "from-env")
    monkeypatch.setenv("VLLM_BASE_URL", "http://gpu-box:8000/")
    s = ControlSettings()
    assert (s.port, s.auth_token, s.split_steps) == (6000, "from-env", [5, 50])
    assert s.vllm_base_url == "http://gpu-box:8000"
    assert ControlSettings(port=7000).port == 7000


@pytest.mark.parametrize(
    "bad",
    [
        {"tls_cert_file": "c.pem"},
        {"tls_client_ca_file": "ca.pem"},
        {"split_steps": [30, 10]},
        {"split_steps": [0]},
        {"ollama_base_url": "ollama:11434"},
        {"port": 70000},
        {"stats_slot_s": 1000},
    ],
)
def test_invalid_settings(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ControlSettings(**bad)  # type: ignore[arg-type]


def test_llm_control_process_prints_ready_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "run" / "control.db"
    env = {
        **os.environ,
        "LLM_CONTROL_GRACE_PERIOD_S": "0.2",
        "LLM_CONTROL_AUTH_TOKEN": "operator-token-0123456789",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "control_service.main", "--port", "0", "--db", str(db)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert line.startswith("llm-control ready on 127.0.0.1:"), line
        assert "state v1" in line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert db.exists()
