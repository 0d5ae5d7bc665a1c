"""Embedding parity end to end: a real control service embeds a corpus on both simulators
(meaning-aware embeddings, one of them skewed the way a quantisation shifts vectors), reports the
difference, and refuses to move Embed to vLLM until parity passed or a forced change names the
re-index."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import field_mask_pb2

from clients.cli.main import main
from clients.gen.llmgateway.v1 import control_pb2
from llmsim import Flavor, RunningSimulator, SimConfig, start_simulator
from tests.control.conftest import Control, error_info, meta, start, violations

CORPUS = Path(__file__).parents[2] / "deploy" / "parity_corpus.txt"
TO_VLLM = control_pb2.UpdateFlagsRequest(
    flags=control_pb2.Flags(embedding_provider=control_pb2.COMPONENT_PROVIDER_VLLM),
    update_mask=field_mask_pb2.FieldMask(paths=["embedding_provider"]),
)


async def _stack(tmp_path: Path, skew: float) -> tuple[Control, list[RunningSimulator]]:
    ollama = await start_simulator(SimConfig(flavor=Flavor.OLLAMA, embedding_mode="concepts"))
    vllm = await start_simulator(
        SimConfig(flavor=Flavor.VLLM, embedding_mode="concepts", embedding_skew=skew)
    )
    control = await start(
        tmp_path / "control.db",
        transport=httpx.AsyncHTTPTransport(),
        ollama_base_url=ollama.base_url,
        vllm_base_url=vllm.base_url,
        parity_corpus_file=CORPUS,
        gpu_backend="off",
    )
    return control, [ollama, vllm]


@pytest.fixture
async def agreeing(tmp_path: Path) -> AsyncIterator[Control]:
    control, sims = await _stack(tmp_path, 0.0)
    yield control
    await control.close()
    for s in sims:
        await s.stop()


@pytest.fixture
async def disagreeing(tmp_path: Path) -> AsyncIterator[Control]:
    control, sims = await _stack(tmp_path, 0.7)
    yield control
    await control.close()
    for s in sims:
        await s.stop()


async def llmctl(control: Control, *argv: str) -> int:
    return await asyncio.to_thread(main, [*argv, "--control", control.target])


async def _move(control: Control, *, force: bool = False, reason: str = "test") -> None:
    req = control_pb2.UpdateFlagsRequest()
    req.CopyFrom(TO_VLLM)
    req.meta.CopyFrom(meta(reason=reason))
    req.force = force
    await control.stub.UpdateFlags(req)


async def test_unmeasured_parity_refuses_the_move(agreeing: Control) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _move(agreeing)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(info.value).reason == "EMBEDDING_PARITY"
    assert "unmeasured" in (info.value.details() or "")
    state = await agreeing.stub.GetState(control_pb2.GetStateRequest())
    assert state.snapshot.flags.embedding_provider == control_pb2.COMPONENT_PROVIDER_OLLAMA


async def test_agreeing_engines_pass_and_the_move_is_allowed(
    agreeing: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(agreeing, "embeddings", "parity", "--file", str(CORPUS)) == 0
    out = capsys.readouterr().out
    assert out.startswith("embedding parity: PASSED")
    assert "mean 1.000, p10 1.000" in out
    await _move(agreeing)
    state = await agreeing.stub.GetState(control_pb2.GetStateRequest())
    assert state.snapshot.flags.embedding_provider == control_pb2.COMPONENT_PROVIDER_VLLM


async def test_disagreeing_engines_fail_clearly_and_the_move_needs_a_re_index(
    disagreeing: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    control = disagreeing
    # The service's own corpus (parity_corpus_file) when no file is given.
    assert await llmctl(control, "embeddings", "parity", "-o", "json", "--reason", "pre-check") == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] is False
    assert doc["cosine_p10"] < 0.7  # the skewed engine's vectors differ for every text
    assert doc["overlap_at_k"] < 0.8
    assert len(doc["texts"]) == 16
    assert "cosine p10" in doc["detail"]

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _move(control)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "below the thresholds" in (info.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _move(control, force=True, reason="because")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(info.value) == ["meta.reason"]
    await _move(control, force=True, reason="re-index of the memory store on vLLM finished")
    events = (await control.stub.ListEvents(control_pb2.ListEventsRequest(page_size=5))).events
    assert [e.action for e in events[:2]] == ["force_embedding_provider", "embedding_parity"]
    assert events[0].reason == "re-index of the memory store on vLLM finished"
    assert json.loads(events[1].after_json)["evidence"]["parity"]["passed"] is False


async def test_bad_parity_requests_name_the_field(agreeing: Control) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await agreeing.stub.MeasureEmbeddingParity(
            control_pb2.MeasureEmbeddingParityRequest(meta=meta(), texts=["a", "b"], k=-1)
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(info.value) == ["k"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await agreeing.stub.MeasureEmbeddingParity(
            control_pb2.MeasureEmbeddingParityRequest(meta=meta(), texts=["only", "two"])
        )
    assert violations(info.value) == ["texts"]
