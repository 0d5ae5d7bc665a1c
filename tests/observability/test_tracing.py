"""One request through the client library is ONE trace (client, router, engine call), exported
over real OTLP/gRPC; fallbacks are span events; a shadow is its own trace linked to the
primary."""

from __future__ import annotations

import httpx

from llmsim import RunningSimulator
from tests.observability._otlp import ReceivedSpan
from tests.observability.conftest import TracedStack, start_traced_stack, stop_traced_stack
from tests.router.shadow_support import shadow_config, wait_mirror

GENERATE = "/llmgateway.v1.RouterService/Generate"
EMBED = "/llmgateway.v1.RouterService/Embed"
SERVER, CLIENT = 2, 3


async def sim_traceparents(sim: RunningSimulator) -> list[str]:
    async with httpx.AsyncClient() as http:
        body = (await http.get(sim.base_url + "/sim/requests")).json()
    # Without the flags (01 sampled, plus 02 "random trace id" from newer SDKs).
    return [e["traceparent"][:-3] for e in body["requests"] if e.get("traceparent")]


def one_trace(s: TracedStack, rid: str, rpc: str) -> dict[str, list[ReceivedSpan]]:
    (client_span,) = [x for x in s.receiver.named(rpc) if x.kind == CLIENT]
    spans = [x for x in s.receiver.spans if x.trace_id == client_span.trace_id]
    by_kind: dict[str, list[ReceivedSpan]] = {}
    for x in spans:
        by_kind.setdefault(f"{x.service}:{x.kind}:{x.name.split(' ')[0]}", []).append(x)
    for x in spans:
        assert x.attributes.get("request_id") == rid, (x.name, x.attributes)
    return by_kind


async def test_generate_is_one_trace_from_client_to_engine(stack: TracedStack) -> None:
    result = await stack.client.generate("tell me about graphs", request_id="rid-gen-1").collect()
    assert result.text
    await stack.flush()
    await stack.receiver.wait_for(lambda: len(stack.receiver.spans) >= 4)

    t = one_trace(stack, "rid-gen-1", GENERATE)
    (client,) = t[f"test-client:{CLIENT}:{GENERATE}"]
    (server,) = t[f"llm-router:{SERVER}:{GENERATE}"]
    (chat,) = t[f"llm-router:{CLIENT}:chat"]
    (http,) = t[f"llm-router:{CLIENT}:POST"]
    assert server.parent_span_id == client.span_id
    assert chat.parent_span_id == server.span_id
    assert http.parent_span_id == chat.span_id

    a = chat.attributes
    assert chat.name == f"chat {a['gen_ai.request.model']}"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "ollama"
    assert a["gen_ai.response.model"]
    assert a["gen_ai.usage.input_tokens"] > 0
    assert a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.response.finish_reasons"] == ["stop"] or a["gen_ai.response.finish_reasons"]
    assert a["gen_ai.response.time_to_first_chunk"] > 0
    assert "gen_ai.output.messages" not in a  # no content unless opted in

    # W3C trace context reached the engine: its traceparent names the httpx span.
    assert f"00-{chat.trace_id}-{http.span_id}" in await sim_traceparents(stack.ollama)


async def test_embed_is_one_trace(stack: TracedStack) -> None:
    out = await stack.client.embed(["a", "b"], request_id="rid-emb-1")
    assert len(out.embeddings) == 2
    await stack.flush()
    await stack.receiver.wait_for(lambda: len(stack.receiver.spans) >= 4)
    t = one_trace(stack, "rid-emb-1", EMBED)
    (server,) = t[f"llm-router:{SERVER}:{EMBED}"]
    (emb,) = t[f"llm-router:{CLIENT}:embeddings"]
    (http,) = t[f"llm-router:{CLIENT}:POST"]
    assert emb.parent_span_id == server.span_id
    assert http.parent_span_id == emb.span_id
    assert emb.attributes["gen_ai.operation.name"] == "embeddings"
    assert emb.attributes["gen_ai.embeddings.dimension.count"] > 0
    sims = await sim_traceparents(stack.ollama) + await sim_traceparents(stack.vllm)
    assert f"00-{emb.trace_id}-{http.span_id}" in sims


async def test_a_fallback_shows_as_span_events() -> None:
    s = await start_traced_stack(ollama={"faults": {"error_rate": 1.0}})
    try:
        result = await s.client.generate("hello", request_id="rid-fb-1").collect()
        assert result.text
        await s.flush()
        await s.receiver.wait_for(lambda: any(x.name.startswith("chat") for x in s.receiver.spans))
        t = one_trace(s, "rid-fb-1", GENERATE)
        (chat,) = t[f"llm-router:{CLIENT}:chat"]
        names = [name for name, _ in chat.events]
        assert "gen_ai.retry" in names
        assert "gen_ai.fallback" in names
        fb = dict(chat.events)["gen_ai.fallback"]
        assert fb["gen_ai.provider.name"] == "ollama"
        assert chat.attributes["gen_ai.provider.name"] == "vllm"  # who answered
        assert chat.attributes["llmgateway.fallback"] is True
        # Each attempt's placement inside its engine pool (issue 17), as data on the span.
        placements = [attrs for name, attrs in chat.events if name == "llmgateway.placement"]
        assert len(placements) >= 3
        assert placements[-1]["llmgateway.replica"] == s.vllm.base_url
        assert placements[-1]["llmgateway.placement"] == "affinity"
        # Each attempt is its own engine call under the chat span.
        assert len(t[f"llm-router:{CLIENT}:POST"]) >= 3
    finally:
        await stop_traced_stack(s)


async def test_a_shadow_is_its_own_trace_linked_to_the_primary(stack: TracedStack) -> None:
    stack.app.config.swap(shadow_config(1.0))
    mirror = stack.app.shadow
    assert mirror is not None
    await stack.client.generate("shadow me", request_id="rid-sh-1").collect()
    await wait_mirror(mirror, lambda: mirror.counters.compared >= 1)
    await stack.flush()
    await stack.receiver.wait_for(
        lambda: any(x.attributes.get("llmgateway.shadow") for x in stack.receiver.spans)
    )
    t = one_trace(stack, "rid-sh-1", GENERATE)
    (primary,) = t[f"llm-router:{CLIENT}:chat"]
    (shadow,) = [x for x in stack.receiver.spans if x.attributes.get("llmgateway.shadow")]
    assert shadow.trace_id != primary.trace_id
    assert shadow.parent_span_id == ""
    assert (primary.trace_id, primary.span_id) in shadow.links
    assert shadow.attributes["gen_ai.provider.name"] == "vllm"
    assert shadow.attributes["request_id"] == "rid-sh-1-shadow"
    shadow_http = [x for x in stack.receiver.spans if x.parent_span_id == shadow.span_id]
    assert shadow_http, "the shadow's engine call is a child of the shadow span"
    assert all(x.attributes.get("request_id") == "rid-sh-1-shadow" for x in shadow_http)
