"""Shadow comparison per output kind: plain comparisons, the mirror over both simulators, and
the control service's report and gate inputs."""

from __future__ import annotations

import orjson
import pytest

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, router_pb2
from control_service.shadow_store import ShadowStore
from router_service.request_stats import KindFigures
from router_service.shadow._kinds import SideOutput, assembled, compare_kinds, output_kind
from router_service.values import Features, ResponseFormat, ToolCallFragment, ToolSpec
from tests.agentic.support import Stack, stack
from tests.router.helpers import collect
from tests.router.shadow_support import pairs, shadow_config, wait_mirror

__all__ = ["stack"]

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
JSON = Features(
    response_format=ResponseFormat("json_schema", "s", orjson.dumps(SCHEMA).decode(), given=True)
)
TOOLS = Features(tools=(ToolSpec("f", "", "{}"),))


def frag(i: int, name: str, args: str, call_id: str = "") -> ToolCallFragment:
    return ToolCallFragment(i, call_id, name, args)


def test_json_validity_and_schema_validity_are_judged_per_side() -> None:
    k = compare_kinds(JSON, SideOutput('{"n": 1}'), SideOutput('{"n": "x"}'), True)
    assert (k.output_kind, k.primary_json_valid, k.primary_schema_valid) == ("json", True, True)
    assert (k.shadow_json_valid, k.shadow_schema_valid) == (True, False)
    k = compare_kinds(JSON, SideOutput('{"n": 1'), SideOutput("[]"), True)
    assert (k.primary_json_valid, k.shadow_json_valid, k.shadow_schema_valid) == (
        False,
        True,
        False,
    )
    obj = Features(response_format=ResponseFormat("json_object", given=True))
    k = compare_kinds(obj, SideOutput("{}"), SideOutput("[1]"), True)
    assert (k.primary_schema_valid, k.shadow_schema_valid) == (True, False)


def test_tool_calls_agree_after_canonical_json_in_any_order() -> None:
    primary = (frag(0, "f", '{"a": 1, "b": [2]}', "x"), frag(1, "g", "{}", "y"))
    shadow = (
        frag(0, "g", "", "p"),
        frag(0, "", "{ }"),
        frag(1, "f", '{"b":[2],'),
        frag(1, "", '"a":1}'),
    )
    assert assembled(primary) == assembled(shadow)
    assert compare_kinds(TOOLS, SideOutput(calls=primary), SideOutput(calls=shadow), True)
    k = compare_kinds(TOOLS, SideOutput(calls=primary), SideOutput(calls=primary[:1]), True)
    assert k.tool_calls_agree is False
    assert compare_kinds(TOOLS, SideOutput("hi"), SideOutput("ho"), True).tool_calls_agree is None


def test_reasoning_ratio_length_finishes_and_failed_sides() -> None:
    k = compare_kinds(
        Features(),
        SideOutput("a", "x" * 10, finish_length=True),
        SideOutput("a", "x" * 25),
        True,
    )
    assert (k.output_kind, k.reasoning_length_ratio) == ("text", 2.5)
    assert (k.primary_finish_length, k.shadow_finish_length) == (True, False)
    assert (
        compare_kinds(Features(), SideOutput("a"), SideOutput("a"), True).reasoning_length_ratio
        is None
    )
    failed = compare_kinds(JSON, SideOutput('{"n":1}'), SideOutput("", finish_length=True), False)
    assert failed == KindFigures(output_kind="json", shadow_finish_length=True)
    assert output_kind(Features(tools=TOOLS.tools, response_format=JSON.response_format)) == (
        "tool_calls"
    )


async def _mirrored(stack: Stack, req: router_pb2.GenerateRequest, n: int) -> None:
    mirror = stack.app.shadow
    assert mirror is not None
    await collect(stack.stub.Generate(req))
    await wait_mirror(mirror, lambda: mirror.counters.compared >= n)


async def test_the_mirror_compares_each_kind_on_both_simulators(stack: Stack) -> None:
    stack.app.config.swap(shadow_config(1.0))  # SHADOW: Ollama answers, vLLM mirrors
    fmt = common_pb2.ResponseFormat(
        type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        name="s",
        json_schema=orjson.dumps(SCHEMA).decode(),
    )
    task = common_pb2.TASK_ANALYSIS  # qwen3:8b thinks and calls tools
    on = common_pb2.ReasoningOptions(level=common_pb2.REASONING_LEVEL_ON)
    tool = router_pb2.Tool(name="search_memory", parameters_json='{"type":"object"}')
    await _mirrored(
        stack, router_pb2.GenerateRequest(prompt="q", task=task, response_format=fmt), 1
    )
    await _mirrored(stack, router_pb2.GenerateRequest(prompt="q", task=task, reasoning=on), 2)
    await _mirrored(
        stack,
        router_pb2.GenerateRequest(prompt="use search_memory", task=task, tools=[tool]),
        3,
    )
    got = {r.kinds.output_kind + str(r.kinds.reasoning_length_ratio is not None): r.kinds
           for r in pairs(stack.app.recorder.drain())}  # fmt: skip
    json_k, reasoned, tools = got["jsonFalse"], got["textTrue"], got["tool_callsFalse"]
    assert (json_k.primary_schema_valid, json_k.shadow_schema_valid) == (True, True)
    assert reasoned.reasoning_length_ratio is not None
    assert reasoned.reasoning_length_ratio > 0
    assert tools.tool_calls_agree is True  # a mirrored call is compared, never executed


def _pair(**kw: object) -> control_pb2.ShadowComparison:
    base: dict[str, object] = {
        "task": common_pb2.TASK_CLASSIFICATION,
        "model": "deepseek-r1:14b",
        "primary_provider": common_pb2.PROVIDER_OLLAMA,
        "shadow_provider": common_pb2.PROVIDER_VLLM,
        "primary_ok": True,
        "shadow_ok": True,
    }
    base.update(kw)
    return control_pb2.ShadowComparison(**base)  # type: ignore[arg-type]


def test_the_report_has_parity_figures_and_the_gate_its_counts() -> None:
    store = ShadowStore(clock=lambda: 1000.0)
    report = control_pb2.StatsReport(
        shadow_comparisons=[
            _pair(output_kind="json", primary_json_valid=True, shadow_json_valid=True,
                  primary_schema_valid=True, shadow_schema_valid=True),
            _pair(output_kind="json", primary_json_valid=True, shadow_json_valid=False,
                  primary_schema_valid=True, shadow_schema_valid=False,
                  shadow_finish_length=True),
            _pair(output_kind="json", shadow_ok=False, primary_json_valid=True),
            _pair(output_kind="tool_calls", tool_calls_agree=True),
            _pair(output_kind="tool_calls", tool_calls_agree=False),
            _pair(reasoning_length_ratio=0.5),
            _pair(reasoning_length_ratio=1.5, primary_finish_length=True),
        ]
    )  # fmt: skip
    store.add("r1", report)
    [g] = store.report().groups
    assert g.structured_pairs == 3
    assert (g.primary_json_valid_rate, g.shadow_json_valid_rate) == (1.0, 0.5)
    assert (g.primary_schema_valid_rate, g.shadow_schema_valid_rate) == (1.0, 0.5)
    assert (g.tool_call_pairs, g.tool_call_agreement_rate) == (2, 0.5)
    assert (g.reasoning_pairs, g.reasoning_length_ratio_p50) == (2, 1.0)
    assert g.primary_length_finish_rate == pytest.approx(1 / 7)
    assert g.shadow_length_finish_rate == pytest.approx(1 / 6)
    counts = store.schema_validity(60.0)
    assert counts == {common_pb2.PROVIDER_OLLAMA: (2, 2), common_pb2.PROVIDER_VLLM: (1, 2)}
