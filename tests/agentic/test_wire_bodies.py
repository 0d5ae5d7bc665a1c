"""The request bodies each engine gets for images, tool history and prior reasoning."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from tests.agentic.support import png
from tests.router.conftest import Harness, start_harness
from tests.router.helpers import collect

HISTORY = [
    router_pb2.Message(role=router_pb2.ROLE_USER, content="find the note"),
    router_pb2.Message(
        role=router_pb2.ROLE_ASSISTANT,
        reasoning="I should search.",
        tool_calls=[
            router_pb2.ToolCall(id="c1", name="search", arguments_json='{"q": "note", "n": 2}')
        ],
    ),
    router_pb2.Message(role=router_pb2.ROLE_TOOL, tool_call_id="c1", content="found"),
]
TOOL = router_pb2.Tool(name="search", parameters_json='{"type":"object"}')


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = await start_harness()
    yield harness
    await harness.channel.close()
    await harness.app.stop(0)


async def _send(h: Harness, provider: int, **kw: object) -> dict[str, Any]:
    req = router_pb2.GenerateRequest(provider=provider, **kw)  # type: ignore[arg-type]
    await collect(h.stub.Generate(req))
    engine = h.ollama if provider == common_pb2.PROVIDER_OLLAMA else h.vllm
    return engine.seen[-1].body


async def test_tool_history_in_ollamas_shape(h: Harness) -> None:
    body = await _send(h, common_pb2.PROVIDER_OLLAMA, messages=HISTORY, tools=[TOOL])
    _user, assistant, tool = body["messages"]
    assert assistant == {
        "role": "assistant",
        "content": "",
        "thinking": "I should search.",
        "tool_calls": [
            {
                "id": "c1",
                "function": {"index": 0, "name": "search", "arguments": {"n": 2, "q": "note"}},
            }
        ],
    }
    # Ollama wants the tool's name on the result: taken from the call it answers.
    assert tool == {"role": "tool", "content": "found", "tool_name": "search", "tool_call_id": "c1"}


async def test_tool_history_in_vllms_shape(h: Harness) -> None:
    body = await _send(h, common_pb2.PROVIDER_VLLM, messages=HISTORY, tools=[TOOL])
    _, assistant, tool = body["messages"]
    assert assistant == {
        "role": "assistant",
        "content": "",
        "reasoning": "I should search.",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "search", "arguments": '{"n":2,"q":"note"}'},
            }
        ],
    }
    assert tool == {"role": "tool", "content": "found", "tool_call_id": "c1"}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "search", "description": "", "parameters": {"type": "object"}},
        }
    ]


async def test_images_as_base64_for_ollama_and_data_urls_for_vllm(h: Harness) -> None:
    image = png()
    msg = router_pb2.Message(content="what?", images=[router_pb2.Image(data=image)])
    task = common_pb2.TASK_REFLECTION  # gemma3:4b
    body = await _send(h, common_pb2.PROVIDER_OLLAMA, messages=[msg], task=task)
    assert body["messages"] == [
        {"role": "user", "content": "what?", "images": [base64.b64encode(image).decode()]}
    ]
    body = await _send(h, common_pb2.PROVIDER_VLLM, messages=[msg], task=task)
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]
