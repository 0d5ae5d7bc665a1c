"""The ``llm-sim`` entry point: flags and environment, one startup line, clean SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import httpx
import pytest

from llmsim import Flavor, SimConfig, simulator
from llmsim.main import build_config, parse_args


def test_flags_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "4")
    monkeypatch.setenv("OLLAMA_MAX_QUEUE", "7")
    cfg = build_config(parse_args(["--itl-ms", "0", "--stall-after-tokens", "3"]))
    assert cfg.flavor is Flavor.OLLAMA
    assert cfg.port == 11434
    assert cfg.num_parallel == 4
    assert cfg.max_queue == 7
    assert cfg.timing().itl_ms == 0
    assert cfg.faults.stall_after_tokens == 3
    cfg = build_config(
        parse_args(["--flavor", "vllm", "--num-parallel", "2", "--profile", "titan-vllm"])
    )
    assert cfg.port == 8000
    assert cfg.num_parallel == 2
    assert cfg.profile == "titan-vllm"
    cfg = build_config(parse_args(["--models", "a:1b,b", "--embedding-models", "e=16"]))
    assert [(m.name, m.kind, m.embedding_dim) for m in cfg.catalogue()][1:] == [
        ("b", "generate", 4096),
        ("e", "embedding", 16),
    ]


def test_profiles() -> None:
    assert SimConfig().timing().itl_ms == 1.0
    assert SimConfig(profile="titan-ollama").timing().num_parallel == 4
    assert SimConfig(profile="titan-ollama", num_parallel=1).timing().num_parallel == 1
    assert SimConfig(profile="titan-vllm", itl_ms=3).timing().itl_ms == 3


async def test_context_manager() -> None:
    async with simulator(SimConfig(flavor=Flavor.VLLM)) as sim, httpx.AsyncClient() as http:
        assert (await http.get(sim.base_url + "/health")).status_code == 200
    assert not sim.listening


async def test_cli_starts_and_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llmsim.main",
        "--flavor",
        "vllm",
        "--port",
        "0",
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stderr.readline(), 20)
        match = re.search(rb"listening on (http://\S+)", line)
        assert match, line
        async with httpx.AsyncClient() as http:
            resp = await http.get(match.group(1).decode() + "/health")
        assert resp.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
