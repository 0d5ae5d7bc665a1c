"""Every fault, set at run time through the admin endpoint and per request through X-Sim-Fault."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from llmsim import Faults, Flavor, RunningSimulator

SimFactory = Callable[..., Awaitable[RunningSimulator]]
WaitFor = Callable[..., Awaitable[None]]
MESSAGES = [{"role": "user", "content": "hello"}]
BUSY = "server busy, please try again.  maximum pending requests exceeded"
OLLAMA_MIDSTREAM = "an error was encountered while running the model"


def _request(flavor: Flavor, stream: bool = True) -> tuple[str, dict[str, Any]]:
    if flavor is Flavor.OLLAMA:
        return "/api/chat", {"model": "qwen3:8b", "messages": MESSAGES, "stream": stream}
    body = {"model": "Qwen/Qwen3-8B", "messages": MESSAGES, "stream": stream}
    return "/v1/chat/completions", body


def _tokens(flavor: Flavor, lines: list[str]) -> list[str]:
    """Token texts in the stream lines seen so far (either flavour)."""
    out = []
    for line in lines:
        if flavor is Flavor.OLLAMA:
            obj = orjson.loads(line)
            if not obj.get("done") and "message" in obj:
                out.append(obj["message"]["content"])
        elif line.startswith("data: {"):
            choices = orjson.loads(line[6:]).get("choices") or [{}]
            content = choices[0].get("delta", {}).get("content")
            if content:
                out.append(content)
    return out


async def _lines(resp: httpx.Response) -> AsyncIterator[str]:
    async for line in resp.aiter_lines():
        if line:
            yield line


async def _set(http: httpx.AsyncClient, sim: RunningSimulator, **changes: Any) -> dict[str, Any]:
    resp = await http.put(sim.base_url + "/sim/faults", json=changes)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.fixture(params=[Flavor.OLLAMA, Flavor.VLLM], ids=["ollama", "vllm"])
async def sim(request: pytest.FixtureRequest, make_sim: SimFactory) -> RunningSimulator:
    flavor: Flavor = request.param
    return await make_sim(flavor=flavor)


async def test_error_via_admin_and_header(sim: RunningSimulator, http: httpx.AsyncClient) -> None:
    flavor = sim.config.flavor
    path, body = _request(flavor, stream=False)
    await _set(http, sim, error_rate=1.0, error_status=503)
    resp = await http.post(sim.base_url + path, json=body)
    assert resp.status_code == 503
    if flavor is Flavor.OLLAMA:
        assert resp.json() == {"error": BUSY}
    else:
        err = resp.json()["error"]
        assert err["code"] == 503
        assert err["type"] == "ServiceUnavailableError"
        assert set(err) == {"message", "type", "param", "code"}
    await _set(http, sim, error_rate=0.0)
    assert (await http.post(sim.base_url + path, json=body)).status_code == 200
    hdr = await http.post(sim.base_url + path, json=body, headers={"X-Sim-Fault": "error=500"})
    assert hdr.status_code == 500
    if flavor is Flavor.OLLAMA:
        assert hdr.json() == {"error": OLLAMA_MIDSTREAM}
    else:
        assert hdr.json()["error"]["type"] == "InternalServerError"
    default = await http.post(sim.base_url + path, json=body, headers={"X-Sim-Fault": "error"})
    assert default.status_code == 503  # the live error_status
    assert sim.stats.errors_total == 3


async def test_partial_error_rate(make_sim: SimFactory, http: httpx.AsyncClient) -> None:
    sim = await make_sim(flavor=Flavor.OLLAMA, itl_ms=0.0)
    sim.faults.error_rate = 0.5
    path, body = _request(Flavor.OLLAMA, stream=False)
    codes = [(await http.post(sim.base_url + path, json=body)).status_code for _ in range(40)]
    assert {200, 500} == set(codes)


async def test_latency_and_slow_first_token(sim: RunningSimulator, http: httpx.AsyncClient) -> None:
    path, body = _request(sim.config.flavor)
    start = time.monotonic()
    resp = await http.post(
        sim.base_url + path, json=body, headers={"X-Sim-Fault": "latency_ms=150"}
    )
    assert resp.status_code == 200
    assert time.monotonic() - start >= 0.15
    await _set(http, sim, slow_first_token_ms=200)
    start = time.monotonic()
    async with http.stream("POST", sim.base_url + path, json=body) as resp:
        lines = _lines(resp)
        while not _tokens(sim.config.flavor, [await anext(lines)]):
            pass
        assert time.monotonic() - start >= 0.2
    assert sim.context.log.entries()[-1]["planned_ttft_ms"] >= 200


async def test_stall_keeps_connection_open(
    sim: RunningSimulator, http: httpx.AsyncClient, wait_for: WaitFor
) -> None:
    flavor = sim.config.flavor
    path, body = _request(flavor)
    sim.faults.stall_after_tokens = 2
    seen: list[str] = []
    async with http.stream("POST", sim.base_url + path, json=body) as resp:
        lines = _lines(resp)
        while len(_tokens(flavor, seen)) < 2:
            seen.append(await anext(lines))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(lines), 0.2)  # nothing more, connection still open
        assert sim.stats.running == 1
    await wait_for(lambda: sim.stats.running == 0 and sim.stats.aborted_total == 1)
    assert _tokens(flavor, seen)
    assert len(_tokens(flavor, seen)) == 2


async def test_disconnect_mid_stream(sim: RunningSimulator, http: httpx.AsyncClient) -> None:
    flavor = sim.config.flavor
    path, body = _request(flavor)
    seen: list[str] = []
    headers = {"X-Sim-Fault": "disconnect_after=3"}

    async def read_all() -> None:
        async with http.stream("POST", sim.base_url + path, json=body, headers=headers) as resp:
            assert resp.status_code == 200
            async for line in _lines(resp):
                seen.append(line)

    with pytest.raises(httpx.RemoteProtocolError):
        await read_all()
    assert len(_tokens(flavor, seen)) == 3
    # Via the admin endpoint, and for a non-streaming request: no response at all.
    await _set(http, sim, disconnect_after_tokens=1)
    _, plain = _request(flavor, stream=False)
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post(sim.base_url + path, json=plain)


async def test_malformed_line(sim: RunningSimulator, http: httpx.AsyncClient) -> None:
    flavor = sim.config.flavor
    path, body = _request(flavor)
    sim.faults.malformed_after_tokens = 1
    resp = await http.post(sim.base_url + path, json=body)
    lines = [ln for ln in resp.text.split("\n") if ln]
    bad = []
    for ln in lines:
        payload = ln[6:] if ln.startswith("data: ") else ln
        if payload == "[DONE]":
            continue
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError:
            bad.append(ln)
    assert len(bad) == 1
    good = [ln for ln in lines if ln not in bad]
    assert len(_tokens(flavor, good)) == 24  # the stream carries on after the garbage
    hdr = await http.post(
        sim.base_url + path, json=body, headers={"X-Sim-Fault": "malformed_after=0"}
    )
    assert hdr.status_code == 200


async def test_midstream_error_formats(sim: RunningSimulator, http: httpx.AsyncClient) -> None:
    flavor = sim.config.flavor
    path, body = _request(flavor)
    await _set(http, sim, midstream_error_after_tokens=2)
    resp = await http.post(sim.base_url + path, json=body)
    assert resp.status_code == 200
    lines = [ln for ln in resp.text.split("\n") if ln]
    if flavor is Flavor.OLLAMA:
        assert orjson.loads(lines[-1]) == {"error": OLLAMA_MIDSTREAM}
        assert len(_tokens(flavor, lines[:-1])) == 2
    else:
        assert lines[-1] == "data: [DONE]"
        err = orjson.loads(lines[-2][6:])["error"]
        assert err["code"] == 500
        assert err["type"] == "InternalServerError"
    # Before anything was written Ollama answers with a real status instead.
    zero = await http.post(
        sim.base_url + path, json=body, headers={"X-Sim-Fault": "midstream_error_after=0"}
    )
    assert zero.status_code == (500 if flavor is Flavor.OLLAMA else 200)


async def test_health_failing(sim: RunningSimulator, http: httpx.AsyncClient) -> None:
    path = "/" if sim.config.flavor is Flavor.OLLAMA else "/health"
    assert (await http.get(sim.base_url + path)).status_code == 200
    await _set(http, sim, health_failing=True)
    assert (await http.get(sim.base_url + path)).status_code == 503
    sim.faults.health_failing = False
    assert (await http.get(sim.base_url + path)).status_code == 200


async def test_refuse_connections(sim: RunningSimulator, wait_for: WaitFor) -> None:
    url = sim.base_url + ("/" if sim.config.flavor is Flavor.OLLAMA else "/health")
    sim.faults.refuse_connections = True
    await wait_for(lambda: not sim.listening, what="socket closed")
    async with httpx.AsyncClient() as fresh:
        with pytest.raises(httpx.ConnectError):
            await fresh.get(url)
    sim.faults.refuse_connections = False
    await wait_for(lambda: sim.listening, what="socket reopened")
    async with httpx.AsyncClient() as fresh:
        assert (await fresh.get(url)).status_code == 200


async def test_refuse_connections_via_admin_restores_itself(
    sim: RunningSimulator, wait_for: WaitFor
) -> None:
    async with httpx.AsyncClient() as http:
        await _set(http, sim, refuse_connections=True, refuse_connections_ms=150)
    await wait_for(lambda: not sim.listening, what="socket closed")
    await wait_for(lambda: sim.listening, what="socket reopened")
    assert sim.faults.refuse_connections is False


async def test_bad_fault_header_is_400(sim: RunningSimulator, http: httpx.AsyncClient) -> None:
    path, body = _request(sim.config.flavor, stream=False)
    for bad in ("explode=1", "disconnect_after=x", "error=200"):
        resp = await http.post(sim.base_url + path, json=body, headers={"X-Sim-Fault": bad})
        assert resp.status_code == 400, bad


async def test_admin_validation_and_reset(sim: RunningSimulator, http: httpx.AsyncClient) -> None:
    base = sim.base_url
    assert (await http.put(base + "/sim/faults", json={"nope": 1})).status_code == 400
    assert (await http.put(base + "/sim/faults", json={"error_rate": 2})).status_code == 400
    assert (await http.put(base + "/sim/faults", content=b"[")).status_code == 400
    state = await _set(http, sim, stall_after_tokens=4, error_status=502)
    assert state["stall_after_tokens"] == 4
    assert state["error_status"] == 502
    assert (await http.get(base + "/sim/faults")).json() == state
    assert sim.faults.stall_after_tokens == 4  # the live object sees admin changes
    path, body = _request(sim.config.flavor, stream=False)
    await http.post(base + path, json=body, headers={"X-Sim-Fault": "error"})
    assert (await http.post(base + "/sim/reset")).status_code == 200
    assert (await http.get(base + "/sim/faults")).json() == Faults().model_dump()
    stats = (await http.get(base + "/sim/stats")).json()
    assert stats["requests_total"] == 0
    assert stats["errors_total"] == 0


async def test_embedding_faults(make_sim: SimFactory, http: httpx.AsyncClient) -> None:
    sim = await make_sim(flavor=Flavor.OLLAMA)
    body = {"model": "mxbai-embed-large", "input": "x"}
    url = sim.base_url + "/api/embed"
    assert (
        await http.post(url, json=body, headers={"X-Sim-Fault": "error=503"})
    ).status_code == 503
    mid = await http.post(url, json=body, headers={"X-Sim-Fault": "midstream_error_after=0"})
    assert mid.status_code == 500
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post(url, json=body, headers={"X-Sim-Fault": "disconnect_after=0"})
