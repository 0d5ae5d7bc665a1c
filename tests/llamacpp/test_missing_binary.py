"""Without the llama-server binary the llama.cpp tests fail, loudly and saying how to build it;
they are never skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_binary_fails_the_tests_with_the_way_to_build_it(tmp_path: Path) -> None:
    env = {**os.environ, "LLAMA_SERVER_BIN": str(tmp_path / "no-such-llama-server")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/llamacpp/test_llamacpp_router.py::test_embeddings_come_back_normalised",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "1 error" in out.stdout
    assert "skipped" not in out.stdout
    assert "scripts/build_llama_server.sh" in out.stdout
