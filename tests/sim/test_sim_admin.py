"""/sim/requests shows what the router sent (headers, options) and never the prompt text."""

from __future__ import annotations

import httpx
import orjson

from llmsim import RunningSimulator

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SECRET = "my private diary entry"


async def test_request_log_ollama(ollama_sim: RunningSimulator, http: httpx.AsyncClient) -> None:
    body = {
        "model": "qwen3:8b",
        "messages": [{"role": "user", "content": SECRET}],
        "stream": False,
        "options": {"temperature": 0.2, "num_predict": 4},
        "keep_alive": "10m",
    }
    headers = {"X-Request-Id": "rid-1", "traceparent": TRACEPARENT}
    await http.post(ollama_sim.base_url + "/api/chat", json=body, headers=headers)
    await http.post(ollama_sim.base_url + "/api/embed", json={"model": "bad", "input": SECRET})
    resp = await http.get(ollama_sim.base_url + "/sim/requests")
    assert SECRET not in resp.text
    chat, embed = orjson.loads(resp.content)["requests"]
    assert chat["path"] == "/api/chat"
    assert chat["method"] == "POST"
    assert chat["model"] == "qwen3:8b"
    assert chat["x_request_id"] == "rid-1"
    assert chat["traceparent"] == TRACEPARENT
    assert chat["options"] == {"temperature": 0.2, "num_predict": 4}
    assert chat["keep_alive"] == "10m"
    assert chat["stream"] is False
    assert chat["status"] == 200
    assert chat["completion_tokens"] == 4
    assert embed["status"] == 404
    assert embed["model"] == "bad"
    last = orjson.loads((await http.get(ollama_sim.base_url + "/sim/requests?limit=1")).content)
    assert [e["path"] for e in last["requests"]] == ["/api/embed"]


async def test_request_log_vllm(vllm_sim: RunningSimulator, http: httpx.AsyncClient) -> None:
    body = {
        "model": "Qwen/Qwen3-8B",
        "messages": [{"role": "user", "content": SECRET}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 3,
        "temperature": 0.0,
    }
    await http.post(vllm_sim.base_url + "/v1/chat/completions", json=body)
    resp = await http.get(vllm_sim.base_url + "/sim/requests")
    assert SECRET not in resp.text
    (entry,) = orjson.loads(resp.content)["requests"]
    assert entry["stream_options"] == {"include_usage": True}
    assert entry["params"]["max_tokens"] == 3
    assert entry["params"]["temperature"] == 0.0
    assert entry["finish_reason"] == "length"
    assert entry["status"] == 200
    stats = orjson.loads((await http.get(vllm_sim.base_url + "/sim/stats")).content)
    assert stats["requests_total"] == 1
    assert stats["tokens_total"] == 3
