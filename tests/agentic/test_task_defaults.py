"""Per-task defaults in the pushed config: validated by the control service with the router's own
parser, applied by the router, and overridden by a request's own values."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, router_pb2
from control_service import convert, validation
from control_service.errors import InvalidChange
from control_service.state import default_state
from control_service.task_defaults import TaskDefaultsEntry
from router_service.config.routing import ConfigError, from_snapshot
from tests.router.conftest import start_harness
from tests.router.fake_control import make_snapshot, new_fake_control, start_fake_control
from tests.router.helpers import collect

SCHEMA = '{"type":"object","properties":{"label":{"type":"string"}}}'


def _defaults() -> control_pb2.TaskDefaults:
    return control_pb2.TaskDefaults(
        task=common_pb2.TASK_CLASSIFICATION,
        reasoning=common_pb2.ReasoningOptions(level=common_pb2.REASONING_LEVEL_OFF),
        response_format=common_pb2.ResponseFormat(
            type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="label", json_schema=SCHEMA
        ),
        engine_options={"num_ctx": "16384", "min_p": "0.05"},
    )


async def test_the_router_applies_a_tasks_defaults_and_the_request_wins(tmp_path: Path) -> None:
    fake = new_fake_control()
    server, port = await start_fake_control(fake)
    h = await start_harness(
        control_address=f"127.0.0.1:{port}", config_cache_path=tmp_path / "c.snapshot"
    )
    try:
        snap = make_snapshot(1)
        snap.flags.task_defaults.append(_defaults())
        await fake.outbox.put(snap)
        await fake.wait_for(lambda: fake.acks == [1])
        task = common_pb2.TASK_CLASSIFICATION  # deepseek-r1:14b
        await collect(h.stub.Generate(router_pb2.GenerateRequest(prompt="q", task=task)))
        body = h.ollama.seen[-1].body
        assert body["think"] is False
        assert body["format"] == {"type": "object", "properties": {"label": {"type": "string"}}}
        assert body["options"]["num_ctx"] == 16384
        assert "min_p" in body["options"]  # Ollama knows min_p too
        own = router_pb2.GenerateRequest(
            prompt="q",
            task=task,
            reasoning=common_pb2.ReasoningOptions(level=common_pb2.REASONING_LEVEL_ON),
            response_format=common_pb2.ResponseFormat(type=common_pb2.RESPONSE_FORMAT_TYPE_TEXT),
            engine_options={"num_ctx": "2048"},
        )
        await collect(h.stub.Generate(own))
        body = h.ollama.seen[-1].body
        assert body["think"] is True
        assert "format" not in body
        assert body["options"]["num_ctx"] == 2048
        # Another task: no defaults.
        await collect(h.stub.Generate(router_pb2.GenerateRequest(prompt="q")))
        assert "think" not in h.ollama.seen[-1].body
        # On vLLM a task default it does not know (num_ctx) is left out, not refused.
        pinned = router_pb2.GenerateRequest(
            prompt="q", task=task, provider=common_pb2.PROVIDER_VLLM
        )
        await collect(h.stub.Generate(pinned))
        vbody = h.vllm.seen[-1].body
        assert "num_ctx" not in vbody
        assert vbody["min_p"] == 0.05
        assert vbody["chat_template_kwargs"] == {"enable_thinking": False}
    finally:
        await h.channel.close()
        await h.app.stop(0)
        await server.stop(0)


def test_the_router_nacks_defaults_it_cannot_use() -> None:
    snap = make_snapshot(1)
    bad = _defaults()
    bad.engine_options["mirostat"] = "2"
    snap.flags.task_defaults.append(bad)
    with pytest.raises(ConfigError, match="mirostat"):
        from_snapshot(snap)
    snap = make_snapshot(1)
    snap.flags.task_defaults.extend([_defaults(), _defaults()])
    with pytest.raises(ConfigError, match="defaults already"):
        from_snapshot(snap)


def test_control_round_trips_defaults_and_pushes_them() -> None:
    flags = convert.flags_from_proto(control_pb2.Flags(task_defaults=[_defaults()]))
    [entry] = flags.task_defaults
    assert entry == TaskDefaultsEntry(
        task="classification",
        reasoning_level="off",
        response_format="json_schema",
        schema_name="label",
        json_schema=SCHEMA,
        engine_options=(("min_p", "0.05"), ("num_ctx", "16384")),
    )
    assert convert.flags_to_proto(flags).task_defaults[0] == _defaults()
    base = default_state()
    state = replace(base, flags=replace(base.flags, task_defaults=flags.task_defaults))
    assert validation.check(state) == state


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        (TaskDefaultsEntry("analysis", engine_options=(("mirostat", "1"),)), "engine_options"),
        (TaskDefaultsEntry("analysis", engine_options=(("num_ctx", "x"),)), "engine_options"),
        (TaskDefaultsEntry("analysis", response_format="json_schema"), "response_format.name"),
        (
            TaskDefaultsEntry(
                "analysis", response_format="json_schema", schema_name="s", json_schema="[]"
            ),
            "response_format.json_schema",
        ),
        (TaskDefaultsEntry("embedding"), "task"),
        (TaskDefaultsEntry("analysis", reasoning_budget_tokens=0), "reasoning.budget_tokens"),
    ],
)
def test_control_refuses_a_default_the_router_would_refuse(
    entry: TaskDefaultsEntry, field: str
) -> None:
    state = replace(default_state(), flags=replace(default_state().flags, task_defaults=(entry,)))
    with pytest.raises(InvalidChange) as err:
        validation.check(state)
    fields = [v.field for v in err.value.violations]
    assert any(f.startswith(f"flags.task_defaults[0].{field}") for f in fields), fields
