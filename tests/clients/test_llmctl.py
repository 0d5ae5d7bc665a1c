"""llmctl generate/embed, run in-process (in a worker thread) against the fake router."""

from __future__ import annotations

import asyncio
import json
import sys

import grpc
import pytest

from clients.cli.main import main
from clients.gen.llmgateway.v1 import common_pb2
from clients.llm import ErrorCode, Usage
from clients.llm.testing import (
    EmbedScript,
    FakeError,
    FakeRouter,
    FakeRouterServicer,
    GenerateScript,
)


async def llmctl(router: FakeRouter, *argv: str) -> int:
    return await asyncio.to_thread(main, ["--target", router.target, "--timeout", "10", *argv])


async def test_generate_streams_text_and_prints_a_summary(
    fake_router: FakeRouter, servicer: FakeRouterServicer, capsys: pytest.CaptureFixture[str]
) -> None:
    servicer.generate = GenerateScript(deltas=["Hello", ", ", "world"], usage=Usage(5, 3, 8))
    status = await llmctl(
        fake_router,
        "generate",
        "say hi",
        "--task",
        "synthesis",
        "--provider",
        "vllm",
        "--model",
        "qwen3:8b",
        "--system",
        "be brief",
        "--max-tokens",
        "16",
        "--temperature",
        "0.2",
        "--seed",
        "7",
        "--request-id",
        "cli-1",
    )
    out, err = capsys.readouterr()
    assert status == 0
    assert out == "Hello, world\n"
    assert err.strip() == (
        "provider=vllm model=qwen3:8b engine_model=Qwen/Qwen3-8B request_id=cli-1 "
        "finish=stop tokens=5+3=8 ttft=12.5ms total=80.0ms rate=40.0tok/s"
    )
    request = servicer.generate_calls[0].request
    assert (request.prompt, request.system, request.model) == ("say hi", "be brief", "qwen3:8b")
    assert request.task == common_pb2.TASK_SYNTHESIS
    assert request.provider == common_pb2.PROVIDER_VLLM
    assert request.options.max_tokens == 16
    assert request.options.temperature == pytest.approx(0.2)
    assert request.options.seed == 7
    assert servicer.generate_calls[0].metadata["x-request-id"] == "cli-1"


async def test_generate_json(
    fake_router: FakeRouter, servicer: FakeRouterServicer, capsys: pytest.CaptureFixture[str]
) -> None:
    servicer.generate = GenerateScript(deltas=["a", "b"], fallback=True)
    status = await llmctl(fake_router, "generate", "hi", "-o", "json")
    out, err = capsys.readouterr()
    assert status == 0
    assert err == ""
    document = json.loads(out)
    request_id = servicer.generate_calls[0].request.request_id
    assert document == {
        "request_id": request_id,
        "provider": "vllm",
        "model": "qwen3:8b",
        "engine_model": "Qwen/Qwen3-8B",
        "fallback": True,
        "text": "ab",
        "reasoning": "",
        "tool_calls": [],
        "finish_reason": "stop",
        "raw_finish_reason": "",
        "stop_sequence": "",
        "usage": {
            "prompt_tokens": 3,
            "completion_tokens": 2,
            "total_tokens": 5,
            "reasoning_tokens": 0,
        },
        "timings": {
            "time_to_first_token_ms": 12.5,
            "total_ms": 80.0,
            "tokens_per_second": 40.0,
            "time_to_first_reasoning_ms": 0.0,
            "time_to_first_answer_ms": 0.0,
        },
    }


async def test_generate_invalid_request_exits_2_with_one_line(
    fake_router: FakeRouter, servicer: FakeRouterServicer, capsys: pytest.CaptureFixture[str]
) -> None:
    servicer.generate = GenerateScript(
        error=FakeError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid request field(s) options.max_tokens",
            ErrorCode.INVALID_REQUEST,
            field_violations=[("options.max_tokens", "must be positive")],
        )
    )
    status = await llmctl(fake_router, "generate", "hi", "--max-tokens", "-1", "--request-id", "r9")
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("llmctl: error: INVALID_REQUEST ERR_4000 (grpc INVALID_ARGUMENT)")
    assert "request_id=r9" in err
    assert "options.max_tokens: must be positive" in err
    assert "Traceback" not in err


async def test_generate_error_after_partial_output_exits_1(
    fake_router: FakeRouter, servicer: FakeRouterServicer, capsys: pytest.CaptureFixture[str]
) -> None:
    servicer.generate = GenerateScript(
        deltas=["so far", "never"],
        error=FakeError(
            grpc.StatusCode.UNAVAILABLE,
            "engine went away",
            ErrorCode.LLM_UNAVAILABLE,
            provider="vllm",
            model="qwen3:8b",
        ),
        interrupt_after=1,
    )
    status = await llmctl(fake_router, "generate", "hi", "--request-id", "r1")
    out, err = capsys.readouterr()
    assert status == 1
    assert out == "so far\n"
    assert err == (
        "llmctl: error: LLM_UNAVAILABLE ERR_5001 (grpc UNAVAILABLE): engine went away "
        "[provider=vllm model=qwen3:8b request_id=r1]\n"
    )


async def test_generate_json_error_prints_no_json(
    fake_router: FakeRouter, servicer: FakeRouterServicer, capsys: pytest.CaptureFixture[str]
) -> None:
    servicer.generate = GenerateScript(
        error=FakeError(grpc.StatusCode.NOT_FOUND, "no such model", ErrorCode.MODEL_NOT_FOUND),
        interrupt_after=1,
    )
    status = await llmctl(fake_router, "generate", "hi", "-o", "json", "--model", "nope")
    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    assert err.startswith("llmctl: error: MODEL_NOT_FOUND ERR_4004 (grpc NOT_FOUND): no such")


async def test_generate_deadline(
    fake_router: FakeRouter, servicer: FakeRouterServicer, capsys: pytest.CaptureFixture[str]
) -> None:
    servicer.generate = GenerateScript(hang=True)
    status = await asyncio.to_thread(
        main, ["--target", fake_router.target, "--timeout", "0.3", "generate", "hi"]
    )
    _, err = capsys.readouterr()
    assert status == 1
    assert err.startswith("llmctl: error: DEADLINE_EXCEEDED: ")
    await servicer.cancelled.wait()


async def test_embed_text_prints_one_vector_per_line(
    fake_router: FakeRouter, servicer: FakeRouterServicer, capsys: pytest.CaptureFixture[str]
) -> None:
    servicer.embed = EmbedScript(vectors=[[0.5, -0.5], [1.0, 0.0]], prompt_tokens=2)
    status = await llmctl(
        fake_router, "embed", "first", "second", "--provider", "ollama", "--request-id", "e1"
    )
    out, err = capsys.readouterr()
    assert status == 0
    assert [json.loads(line) for line in out.splitlines()] == [[0.5, -0.5], [1.0, 0.0]]
    assert err.strip() == (
        "provider=ollama model=mxbai-embed-large request_id=e1 vectors=2 dim=2 prompt_tokens=2"
    )
    request = servicer.embed_calls[0].request
    assert list(request.inputs) == ["first", "second"]
    assert request.provider == common_pb2.PROVIDER_OLLAMA


async def test_embed_json(
    fake_router: FakeRouter, servicer: FakeRouterServicer, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await llmctl(fake_router, "embed", "only", "--model", "bge-m3", "-o", "json")
    out, _ = capsys.readouterr()
    assert status == 0
    document = json.loads(out)
    assert document == {
        "request_id": servicer.embed_calls[0].request.request_id,
        "provider": "ollama",
        "model": "mxbai-embed-large",
        "embeddings": [[0.5, 0.5, 0.5, 0.5]],
        "prompt_tokens": 4,
        "fallback": False,
    }
    assert servicer.embed_calls[0].request.model == "bge-m3"


async def test_embed_error(
    fake_router: FakeRouter, servicer: FakeRouterServicer, capsys: pytest.CaptureFixture[str]
) -> None:
    servicer.embed = EmbedScript(
        error=FakeError(
            grpc.StatusCode.UNAVAILABLE, "down", ErrorCode.EMBEDDING_SERVICE_ERROR, retry_after=3
        )
    )
    status = await llmctl(fake_router, "embed", "x", "--request-id", "e2")
    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    assert err == (
        "llmctl: error: EMBEDDING_SERVICE_ERROR ERR_5004 (grpc UNAVAILABLE): down "
        "[request_id=e2 retry_after=3s]\n"
    )


async def test_unreachable_router(capsys: pytest.CaptureFixture[str]) -> None:
    router = FakeRouter()
    await router.start()
    await router.stop()
    status = await llmctl(router, "generate", "hi")
    _, err = capsys.readouterr()
    assert status == 1
    assert err.startswith("llmctl: error: UNAVAILABLE: ")
    assert err.count("\n") == 1


async def test_target_defaults_to_the_environment(
    fake_router: FakeRouter,
    servicer: FakeRouterServicer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMCTL_TARGET", fake_router.target)
    status = await asyncio.to_thread(main, ["embed", "x", "-o", "json"])
    capsys.readouterr()
    assert status == 0
    assert len(servicer.embed_calls) == 1


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["generate"],
        ["generate", "hi", "--provider", "openai"],
        ["generate", "hi", "--task", "poetry"],
        ["--timeout", "0", "generate", "hi"],
        ["embed"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "usage: llmctl" in capsys.readouterr().err


async def test_console_script_streams_each_chunk_before_the_end(
    fake_router: FakeRouter, servicer: FakeRouterServicer
) -> None:
    # A real process: the first chunk must reach the pipe while the router is still generating.
    servicer.generate = GenerateScript(deltas=["first", "never"], hang=True, interrupt_after=1)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clients.cli.main",
        "--target",
        fake_router.target,
        "--timeout",
        "2",
        "generate",
        "hi",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    assert await process.stdout.readexactly(5) == b"first"
    assert not servicer.cancelled.is_set()
    rest, err = await asyncio.gather(process.stdout.read(), process.stderr.read())
    assert await process.wait() == 1
    assert rest == b"\n"
    assert err.decode().startswith("llmctl: error: DEADLINE_EXCEEDED: ")
    assert b"Traceback" not in err
