"""Each engine's stream shapes for reasoning, tool calls and finish details, as written by the
engines (and their older versions), parsed into the router's one shape."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson

from router_service.providers import OllamaProvider, OpenAICompatProvider
from router_service.values import ChatCall, ChatChunk, ChatMessage, SamplingOptions

CALL = ChatCall("m", (ChatMessage("user", "hi"),), SamplingOptions(), "rid-1")


class _Body(httpx.AsyncByteStream):
    """The engine's bytes, in one read."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body


def _client(body: bytes, content_type: str) -> httpx.AsyncClient:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Body(body), headers={"content-type": content_type})

    return httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://e.test")


def sse(*events: object) -> bytes:
    lines = [b"data: " + orjson.dumps(e) + b"\n\n" for e in events]
    return b"".join(lines) + b"data: [DONE]\n\n"


def delta(d: dict[str, object], finish: str | None = None, **extra: object) -> dict[str, object]:
    choice: dict[str, object] = {"index": 0, "delta": d, "finish_reason": finish}
    choice.update(extra)
    return {"choices": [choice]}


async def _vllm(body: bytes) -> list[ChatChunk]:
    p = OpenAICompatProvider(_client(body, "text/event-stream"))
    return [c async for c in p.stream_chat(CALL)]


async def _ollama(*lines: object) -> list[ChatChunk]:
    body = b"".join(orjson.dumps(x) + b"\n" for x in lines)
    p = OllamaProvider(_client(body, "application/x-ndjson"))
    return [c async for c in p.stream_chat(CALL)]


async def test_vllm_reasoning_under_either_name_and_its_usage_count() -> None:
    chunks = await _vllm(
        sse(
            delta({"role": "assistant", "content": ""}),
            delta({"reasoning": "new name"}),
            delta({"content": None, "reasoning_content": " old name"}),
            delta({"content": "", "reasoning": " both", "reasoning_content": " both"}),
            delta({"content": "answer"}),
            delta({}, "stop"),
            {
                "choices": [],
                "usage": {
                    "prompt_tokens": 3,
                    "completion_tokens": 9,
                    "completion_tokens_details": {"reasoning_tokens": 5},
                },
            },
        )
    )
    assert "".join(c.reasoning for c in chunks) == "new name old name both"
    assert "".join(c.text for c in chunks) == "answer"
    end = chunks[-1]
    assert end.done
    assert (end.finish_reason, end.usage_reasoning_tokens, end.completion_tokens) == ("stop", 5, 9)


async def test_vllm_tool_call_fragments_and_a_new_id_at_the_same_index() -> None:
    chunks = await _vllm(
        sse(
            delta({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f"}}]}),
            delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}),
            delta({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            # A second call that reuses index 0 with a new id: a new call, index 1.
            delta({"tool_calls": [{"index": 0, "id": "b", "function": {"name": "g"}}]}),
            delta({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
            delta({}, "tool_calls"),
        )
    )
    frags = [f for c in chunks for f in c.tool_calls]
    assert [(f.index, f.id, f.name) for f in frags] == [
        (0, "a", "f"),
        (0, "", ""),
        (0, "", ""),
        (1, "b", "g"),
        (1, "", ""),
    ]
    assert "".join(f.arguments for f in frags if f.index == 0) == '{"x":1}'
    assert (chunks[-1].finish_reason, chunks[-1].raw_finish_reason) == ("tool_calls", "tool_calls")


async def test_vllm_stop_string_and_abort_are_reported() -> None:
    chunks = await _vllm(sse(delta({"content": "a"}), delta({}, "stop", stop_reason="END")))
    assert (chunks[-1].finish_reason, chunks[-1].stop_sequence) == ("stop", "END")
    chunks = await _vllm(sse(delta({"content": "a"}), delta({}, "stop", stop_reason=151645)))
    assert chunks[-1].stop_sequence == ""  # a stop token id, not a string
    chunks = await _vllm(sse(delta({"content": "a"}), delta({}, "abort")))
    assert (chunks[-1].finish_reason, chunks[-1].raw_finish_reason) == ("cancelled", "abort")


async def test_vllm_logprobs_are_read() -> None:
    lp = {
        "content": [
            {"token": "a", "logprob": -0.5, "top_logprobs": [{"token": "b", "logprob": -1}]}
        ]
    }
    chunks = await _vllm(sse(delta({"content": "a"}, logprobs=lp), delta({}, "stop")))
    [tok] = [t for c in chunks for t in c.logprobs]
    assert (tok.token, tok.logprob, tok.top[0].token) == ("a", -0.5, "b")


def _line(message: dict[str, object], **extra: object) -> dict[str, object]:
    return {"model": "m", "message": {"role": "assistant", **message}, "done": False, **extra}


async def test_ollama_thinking_whole_tool_calls_and_finish() -> None:
    call = {"id": "call_x", "function": {"index": 0, "name": "f", "arguments": {"x": 1}}}
    second = {"function": {"index": 0, "name": "g", "arguments": {}}}
    chunks = await _ollama(
        _line({"content": "", "thinking": "hmm"}),
        _line({"content": "", "tool_calls": [call]}),
        # A second call that reuses index 0: always a call of its own.
        _line({"content": "", "tool_calls": [second]}),
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": "stop", "eval_count": 4},
    )  # fmt: skip
    assert "".join(c.reasoning for c in chunks) == "hmm"
    frags = [f for c in chunks for f in c.tool_calls]
    assert [(f.index, f.name, f.arguments) for f in frags] == [(0, "f", '{"x":1}'), (1, "g", "{}")]
    assert frags[0].id == "call_x"
    assert frags[1].id  # assigned by the router
    end = chunks[-1]
    assert (end.finish_reason, end.raw_finish_reason) == ("tool_calls", "stop")


async def test_ollama_logprobs_and_an_unload_finish() -> None:
    lps = [{"token": "a", "logprob": -0.1, "top_logprobs": []}]
    chunks = await _ollama(
        _line({"content": "a"}, logprobs=lps),
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": "unload"},
    )  # fmt: skip
    assert [t.token for c in chunks for t in c.logprobs] == ["a"]
    assert (chunks[-1].finish_reason, chunks[-1].raw_finish_reason) == ("cancelled", "unload")
