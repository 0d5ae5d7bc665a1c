"""Per-model prompt policy: the seed's Chain-of-Draft prefix for deepseek-r1, off by default."""

from __future__ import annotations

from pathlib import Path

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, router_pb2
from router_service.prompt_policy import CHAIN_OF_DRAFT_PREFIX, with_system_prefix
from router_service.values import ChatMessage
from tests.router.conftest import start_harness
from tests.router.fake_control import make_snapshot, new_fake_control, start_fake_control
from tests.router.helpers import collect


def test_prefix_goes_before_an_existing_system_message_or_becomes_one() -> None:
    user = ChatMessage("user", "q")
    assert with_system_prefix((user,), "P") == (ChatMessage("system", "P"), user)
    sys = ChatMessage("system", "S")
    assert with_system_prefix((sys, user), "P") == (ChatMessage("system", "P\n\nS"), user)
    assert with_system_prefix((user,), "") == (user,)


async def test_router_applies_the_policy_only_to_the_named_model(tmp_path: Path) -> None:
    fake = new_fake_control()
    server, port = await start_fake_control(fake)
    h = await start_harness(
        control_address=f"127.0.0.1:{port}", config_cache_path=tmp_path / "c.snapshot"
    )
    try:
        snap = make_snapshot(1)
        snap.flags.prompt_policies.append(
            control_pb2.PromptPolicy(model="deepseek-r1:14b", system_prefix=CHAIN_OF_DRAFT_PREFIX)
        )
        await fake.outbox.put(snap)
        await fake.wait_for(lambda: fake.acks == [1])
        synth = router_pb2.GenerateRequest(prompt="q", task=common_pb2.TASK_SYNTHESIS)
        await collect(h.stub.Generate(synth))
        await collect(h.stub.Generate(router_pb2.GenerateRequest(prompt="q")))  # qwen3:8b
        first, second = (s.body for s in h.ollama.seen)
        assert first["model"] == "deepseek-r1:14b"
        assert first["messages"][0] == {"role": "system", "content": CHAIN_OF_DRAFT_PREFIX}
        assert second["messages"] == [{"role": "user", "content": "q"}]
    finally:
        await h.channel.close()
        await h.app.stop(0)
        await server.stop(0)
