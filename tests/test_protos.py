"""The committed generated code matches protos/, and the protos pass buf's STANDARD lint."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from llmtools.protogen import GEN_ROOT, ROOT, generate


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert written, "protoc produced nothing"
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    committed = {
        p.relative_to(GEN_ROOT): p.read_bytes()
        for p in GEN_ROOT.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    stale = sorted(
        str(k) for k in fresh.keys() | committed.keys() if fresh.get(k) != committed.get(k)
    )
    assert not stale, f"generated code is stale, run `make proto`: {stale}"


def test_buf_lint_standard() -> None:
    buf = shutil.which("buf") or str(Path(ROOT, ".venv", "bin", "buf"))
    result = subprocess.run(
        [buf, "lint", "protos"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
