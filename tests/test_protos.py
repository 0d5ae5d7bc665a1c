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


BASELINE = Path(ROOT, "protos", "baseline", "llmgateway-v0.1.0.binpb")


def _buf_breaking(protos: Path) -> subprocess.CompletedProcess[str]:
    buf = shutil.which("buf") or str(Path(ROOT, ".venv", "bin", "buf"))
    return subprocess.run(
        [buf, "breaking", str(protos), "--against", str(BASELINE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_buf_breaking_against_the_release_baseline() -> None:
    # What `make lint` runs: today's protos keep every wire and source promise of v0.1.0.
    result = _buf_breaking(Path(ROOT, "protos"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_allows_an_added_field_and_refuses_a_renumbered_one(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    shutil.copytree(Path(ROOT, "protos"), protos, ignore=shutil.ignore_patterns("baseline"))
    router = protos / "llmgateway" / "v1" / "router.proto"
    original = router.read_text()
    anchor = "  optional bool truncate = 7;\n}\n"  # the end of EmbedRequest
    assert anchor in original
    added = anchor.replace("}", "  // tag is a new, documented field.\n  string tag = 99;\n}")
    router.write_text(original.replace(anchor, added, 1))
    additive = _buf_breaking(protos)
    assert additive.returncode == 0, additive.stdout + additive.stderr

    at = original.index("message EmbedRequest")
    renumbered = original[at:].replace("string model = 4;", "string model = 40;", 1)
    router.write_text(original[:at] + renumbered)
    broken = _buf_breaking(protos)
    assert broken.returncode != 0
    assert "EmbedRequest" in broken.stdout + broken.stderr
