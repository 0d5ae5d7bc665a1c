"""The go/no-go gate: criteria and verdicts with plain data, the golden-query format and checks,
golden runs through a real router pinned to a simulated vLLM, and the gate over gRPC guarding
promotion to PHASE_PRIMARY."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, control_pb2_grpc
from control_service.app import start_control
from control_service.errors import InvalidChange, TransitionError
from control_service.rollback import _jsonschema, gate, golden
from control_service.rollback.gate import (
    Criterion,
    GateInputs,
    GateThresholds,
    StructuredValidity,
    Verdict,
    VramObservation,
    structured_output_validity,
)
from control_service.rollback.golden import GoldenFileError, GoldenRun, QueryResult
from control_service.rollback.golden_runner import GoldenRunner
from control_service.state import Migration, Phase
from control_service.stats_windows import Aggregate, Histogram
from llmsim import Flavor, RunningSimulator, SimConfig, start_simulator
from router_service.app import RouterApp, start_router
from router_service.settings import RouterSettings
from tests.control.conftest import (
    Control,
    Engines,
    RawRouter,
    error_info,
    make_settings,
    meta,
    wait_until,
)

GOLDEN_FILE = Path(__file__).resolve().parents[2] / "deploy" / "golden_queries.yaml"
BOUNDS = (1000.0, 5000.0, 10000.0, 20000.0)
T = GateThresholds(min_requests=10, vram_window_s=3600)
NOW = 10_000.0
GOOD_RUN = GoldenRun(NOW - 30, (QueryResult("a", True), QueryResult("b", True)))
STABLE = VramObservation(
    covered_s=4000,
    samples=400,
    first_used_bytes=20 * 2**30,
    last_used_bytes=20 * 2**30 + 2**28,
    peak_used_bytes=21 * 2**30,
    total_bytes=24 * 2**30,
)


def lat(*counts: int) -> Histogram:
    return Histogram(BOUNDS, list(counts))


def inputs(**kw: object) -> GateInputs:
    base: dict[str, object] = {
        "window_seconds": 900,
        "now": NOW,
        "vllm": {"analysis": Aggregate(requests=100, ttft_ms=lat(100, 0, 0, 0, 0))},
        "vllm_shadow": Aggregate(requests=200, errors=1),
        "golden": GOOD_RUN,
        "vram": STABLE,
    }
    base.update(kw)
    return GateInputs(**base)  # type: ignore[arg-type]


def by_name(result: gate.GateResult) -> dict[str, Criterion]:
    return {c.name: c for c in result.criteria}


# --- verdicts -------------------------------------------------------------------------------


def test_go_when_every_criterion_is_go() -> None:
    result = gate.evaluate(T, inputs())
    assert result.verdict is Verdict.GO
    c = by_name(result)
    assert [x.verdict for x in result.criteria] == [Verdict.GO] * 5
    assert c["golden_queries"].value == "2/2 passed (30s ago)"
    assert c["latency_p95"].value.startswith("generate TTFT p95 ")
    assert c["latency_p95"].threshold == "GO < 5000 ms, NO-GO > 10000 ms"
    assert c["shadow_error_rate"].value == "0.50% (1/200)"
    assert result.summary() == "GO"


@pytest.mark.parametrize(
    ("change", "criterion"),
    [
        ({"golden": GoldenRun(NOW, (QueryResult("a", True), QueryResult("b", False, ("x",))))},
         "golden_queries"),
        ({"vllm": {"analysis": Aggregate(requests=20, ttft_ms=lat(0, 0, 0, 20, 0))}},
         "latency_p95"),
        ({"vllm": {"embedding": Aggregate(requests=20, total_ms=lat(0, 0, 0, 0, 20))}},
         "latency_p95"),
        ({"vllm_shadow": Aggregate(requests=100, errors=6)}, "shadow_error_rate"),
        ({"vram": VramObservation(10, 2, 1, 1, 1, 2, oom_events=1)}, "vram"),
    ],
)  # fmt: skip
def test_any_no_go_makes_the_gate_no_go(change: dict[str, object], criterion: str) -> None:
    result = gate.evaluate(T, inputs(**change))
    assert result.verdict is Verdict.NO_GO
    assert [c.name for c in result.criteria if c.verdict is Verdict.NO_GO] == [criterion]


@pytest.mark.parametrize(
    ("change", "criterion", "detail"),
    [
        ({"golden": None}, "golden_queries", "have not run yet"),
        ({"golden": GoldenRun(NOW, problem="router at x did not answer")}, "golden_queries",
         "did not answer"),
        ({"vllm": {}}, "latency_p95", "no vLLM traffic in the window: hold"),
        ({"vllm": {"analysis": Aggregate(requests=9, ttft_ms=lat(9, 0, 0, 0, 0))}},
         "latency_p95", "9 samples < 10"),
        # p95 between 5 s and 10 s: neither GO nor NO-GO.
        ({"vllm": {"analysis": Aggregate(requests=20, ttft_ms=lat(0, 0, 20, 0, 0))}},
         "latency_p95", "between the GO and NO-GO lines"),
        ({"vllm_shadow": None}, "shadow_error_rate", "shadow_during_split"),
        ({"vllm_shadow": Aggregate(requests=100, errors=3)}, "shadow_error_rate",
         "between the GO and NO-GO lines"),
        ({"vram": None}, "vram", "no GPU telemetry"),
        ({"vram": VramObservation(600, 60, 1, 1, 1, 10)}, "vram", "observed too briefly"),
        ({"vram": VramObservation(4000, 60, 1, 3, 3, 10)}, "vram", "usage is growing"),
    ],
)  # fmt: skip
def test_missing_or_borderline_data_is_inconclusive(
    change: dict[str, object], criterion: str, detail: str
) -> None:
    result = gate.evaluate(T, inputs(**change))
    assert result.verdict is Verdict.INCONCLUSIVE
    c = by_name(result)[criterion]
    assert c.verdict is Verdict.INCONCLUSIVE
    assert detail in c.detail


def test_no_go_beats_inconclusive_and_the_summary_names_both() -> None:
    result = gate.evaluate(T, inputs(vram=None, vllm_shadow=Aggregate(requests=50, errors=10)))
    assert result.verdict is Verdict.NO_GO
    assert result.summary() == (
        "NO-GO (shadow_error_rate NO-GO: 20.00% (10/50); vram INCONCLUSIVE: no GPU telemetry)"
    )


def test_promotion_is_refused_unless_go_or_forced_with_a_reason() -> None:
    split70 = Migration(phase=Phase.SPLIT, split_weight_percent=70)
    assert gate.reaches_primary(split70, Migration(phase=Phase.PRIMARY, split_weight_percent=100))
    assert not gate.reaches_primary(Migration(), Migration(phase=Phase.SHADOW))
    go = gate.evaluate(T, inputs())
    assert gate.promotion_reason(go, False, "ready") == "ready"
    no = gate.evaluate(T, inputs(vram=None))
    with pytest.raises(TransitionError, match="the go/no-go gate says INCONCLUSIVE"):
        gate.promotion_reason(no, False, "ready")
    with pytest.raises(InvalidChange):
        gate.promotion_reason(no, True, "  ")
    assert gate.promotion_reason(no, True, "GPU checked by hand") == (
        "forced past the go/no-go gate, INCONCLUSIVE (vram INCONCLUSIVE: no GPU telemetry): "
        "GPU checked by hand"
    )


# --- golden queries: format and checks ------------------------------------------------------


def test_the_shipped_golden_file_parses() -> None:
    queries = golden.loads(GOLDEN_FILE.read_text())
    assert len(queries) >= 3
    assert all(q.temperature == 0 and q.seed == 7 for q in queries)


def test_checks() -> None:
    q = golden.GoldenQuery(
        "q",
        "p",
        golden.Checks(
            min_length=5,
            max_length=60,
            contains=("Paris",),
            not_contains=("London",),
            regex=(r"^\w+",),
            ignore_case=True,
            reference="the capital is paris",
            min_similarity=0.5,
        ),
    )
    assert golden.check_answer(q, "The capital is PARIS.") == ()
    failures = golden.check_answer(q, "-- london, not it")
    assert failures == (
        "does not contain 'Paris'",
        "contains 'London'",
        "does not match '^\\\\w+'",
        "similarity 0.00 to the reference < min_similarity 0.5",
    )
    assert golden.check_answer(q, "x" * 61)[0] == "length 61 > max_length 60"
    assert golden.similarity("a b c d", "a b x d") == pytest.approx(0.75)


def test_json_schema_check() -> None:
    # The messages are the jsonschema library's (it replaced a hand-written subset whose own
    # wording these assertions used to pin), prefixed with where in the answer they apply.
    schema = {
        "type": "object",
        "required": ["intent", "confidence"],
        "additionalProperties": False,
        "properties": {
            "intent": {"type": "string", "enum": ["account", "billing"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "tags": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 2},
        },
    }
    assert _jsonschema.check_schema(schema) == []
    q = golden.GoldenQuery("q", "p", golden.Checks(json_schema=schema))
    good = '```json\n{"intent": "account", "confidence": 0.9, "tags": ["a"]}\n```'
    assert golden.check_answer(q, good) == ()
    bad = '{"intent": "other", "confidence": true, "tags": ["", "b", "c"], "x": 1}'
    assert golden.check_answer(q, bad) == (
        "json_schema: $: Additional properties are not allowed ('x' was unexpected)",
        "json_schema: $.confidence: True is not of type 'number'",
        "json_schema: $.intent: 'other' is not one of ['account', 'billing']",
        "json_schema: $.tags: ['', 'b', 'c'] is too long",
        "json_schema: $.tags[0]: '' should be non-empty",
    )
    assert golden.check_answer(q, "not json")[0].startswith("not JSON: ")
    # The whole draft is there now (oneOf was refused by the subset); unknown keywords still are.
    assert _jsonschema.check_schema({"oneOf": [{"type": "string"}]}) == []
    assert _jsonschema.check_schema({"properties": {"a": {"requried": ["b"]}}}) == [
        ("requried", "not a JSON Schema 2020-12 keyword")
    ]


def _judge(schema: dict[str, object], answer: str) -> tuple[str, ...]:
    return golden.check_answer(
        golden.GoldenQuery("q", "p", golden.Checks(json_schema=schema)), answer
    )


def test_json_schema_booleans_are_not_numbers() -> None:
    # The hand-written subset compared with ==, so True matched enum [1] and 1 matched const true.
    assert _judge({"enum": [1]}, "true") == ("json_schema: $: True is not one of [1]",)
    assert _judge({"enum": [1]}, "1") == ()
    assert _judge({"const": True}, "1") == ("json_schema: $: True was expected",)
    assert _judge({"const": True}, "true") == ()


def test_a_bad_schema_is_refused_when_the_file_loads_naming_the_field() -> None:
    # The subset accepted {"minItems": "x"} and raised TypeError when an answer was judged.
    text = "queries: [{name: a, prompt: p, checks: {json_schema: {items: {minItems: x}}}}]"
    with pytest.raises(GoldenFileError) as exc:
        golden.loads(text)
    assert str(exc.value) == (
        "queries[0].checks.json_schema.items.minItems: 'x' is not of type 'integer'"
    )
    assert _jsonschema.check_schema({"minItems": "x"}) == [
        ("minItems", "'x' is not of type 'integer'")
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "the top level must be a mapping"),
        ("queries: []", "queries: a non-empty list is required"),
        ("queries: [{name: a, prompt: p}]", "queries[0].checks: needs at least one check"),
        ("queries: [{name: a, prompt: p, checks: {regex: '('}}]", "queries[0].checks.regex[0]"),
        ("queries: [{name: a, prompt: p, checks: {min_similarity: 0.5}}]", "needs a reference"),
        ("queries: [{name: a, prompt: p, checks: {json_schema: {type: nope}}}]",
         "queries[0].checks.json_schema.type: 'nope' is not valid under any of the given schemas"),
        ("queries: [{name: a, prompt: p, task: embedding, checks: {min_length: 1}}]",
         "not embeddings"),
        ("queries: [{name: a, prompt: p, checks: {min_length: 1}},"
         " {name: a, prompt: q, checks: {min_length: 1}}]", "duplicate name(s) a"),
        ("queries: [{name: a, prompt: p, checks: {shorter: 1}}]", "unknown check(s) shorter"),
    ],
)  # fmt: skip
def test_golden_file_errors_name_the_entry(text: str, message: str) -> None:
    with pytest.raises(GoldenFileError) as exc:
        golden.loads(text)
    assert message in str(exc.value)


# --- golden runs through a real router pinned to vLLM ---------------------------------------


@dataclass
class Stack:
    ollama: RunningSimulator
    vllm: RunningSimulator
    router: RouterApp

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.router.port}"


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    ollama = await start_simulator(SimConfig(flavor=Flavor.OLLAMA))
    vllm = await start_simulator(SimConfig(flavor=Flavor.VLLM))
    router = await start_router(
        RouterSettings(
            host="127.0.0.1",
            port=0,
            ollama_base_url=ollama.base_url,
            vllm_base_url=vllm.base_url,
            retry_base_delay_s=0.001,
            retry_max_delay_s=0.002,
        )
    )
    yield Stack(ollama, vllm, router)
    await router.stop(0)
    await ollama.stop()
    await vllm.stop()


async def test_golden_run_passes_on_the_simulated_vllm_and_fails_when_it_errs(
    stack: Stack,
) -> None:
    runner = GoldenRunner(GOLDEN_FILE, stack.address, timeout_s=10)
    run = await runner.run()
    assert run.problem == ""
    assert run.failed == ()
    assert len(run.results) >= 3
    assert gate.golden_queries(run, run.at).verdict is Verdict.GO
    # The pin is strict: a failing vLLM fails the queries, Ollama never answers them.
    stack.vllm.faults.update({"error_rate": 1.0, "error_status": 500})
    run = await runner.run()
    assert run.problem == ""
    assert len(run.failed) == len(run.results)
    assert run.failed[0].error.startswith("LLM_UNAVAILABLE: ")
    assert stack.ollama.stats.requests_total == 0
    assert gate.golden_queries(run, run.at).verdict is Verdict.NO_GO


async def test_golden_run_without_a_router_or_file_is_not_a_failure(tmp_path: Path) -> None:
    run = await GoldenRunner(GOLDEN_FILE, "127.0.0.1:1", timeout_s=2).run()
    assert "did not answer (UNAVAILABLE" in run.problem
    assert gate.golden_queries(run, run.at).verdict is Verdict.INCONCLUSIVE
    run = await GoldenRunner(None, "127.0.0.1:1").run()
    assert run.problem == "no golden_queries_file is configured"
    broken = tmp_path / "g.yaml"
    broken.write_text("queries: 3")
    run = await GoldenRunner(broken, "127.0.0.1:1").run()
    assert run.problem == f"{broken}: queries: a non-empty list is required"


# --- the gate over gRPC ---------------------------------------------------------------------


class FakeVram:
    def __init__(self, observation: VramObservation | None) -> None:
        self.observation = observation

    async def vram(self, window_s: float) -> VramObservation | None:
        return self.observation


def _hist(values: list[int]) -> control_pb2.Histogram:
    return control_pb2.Histogram(upper_bounds=[100, 1000, 5000, 10000], counts=values)


def _stats(version: int, *, requests: int, errors: int, shadow: bool) -> control_pb2.StatsReport:
    return control_pb2.StatsReport(
        config_version=version,
        stats=[
            control_pb2.ProviderTaskStats(
                provider=common_pb2.PROVIDER_VLLM,
                task=common_pb2.TASK_ANALYSIS,
                requests=requests,
                errors=errors,
                ttft_ms=_hist([requests, 0, 0, 0, 0]),
                total_ms=_hist([0, requests, 0, 0, 0]),
                shadow=shadow,
            )
        ],
    )


def _scored(n: int, cosine: float) -> list[control_pb2.ShadowComparison]:
    """``n`` mirrored pairs with a semantic similarity (the meaning criterion's data)."""
    return [
        control_pb2.ShadowComparison(
            request_id=f"s{i}",
            task=common_pb2.TASK_ANALYSIS,
            model="qwen3:8b",
            primary_provider=common_pb2.PROVIDER_OLLAMA,
            shadow_provider=common_pb2.PROVIDER_VLLM,
            primary_ok=True,
            shadow_ok=True,
            text_similarity=0.3,
            embedding_cosine=cosine,
        )
        for i in range(n)
    ]


async def test_gate_over_grpc_guards_promotion_to_primary(tmp_path: Path, stack: Stack) -> None:
    vram = FakeVram(None)
    engines = Engines()
    http = httpx.AsyncClient(transport=httpx.MockTransport(engines.handler))
    settings = make_settings(
        tmp_path / "c.db",
        golden_queries_file=GOLDEN_FILE,
        golden_router_address=stack.address,
        gonogo_min_requests=10,
        gonogo_vram_window_s=3600,
        rollback_enabled=False,
    )
    app = await start_control(settings, http_client=http, vram_source=vram)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    control = Control(app, channel, control_pb2_grpc.ControlServiceStub(channel), engines, http)
    stub = control.stub
    try:
        # No data at all: every criterion but VRAM... is inconclusive.
        r = await stub.EvaluateGoNoGo(control_pb2.EvaluateGoNoGoRequest())
        assert r.verdict == control_pb2.VERDICT_INCONCLUSIVE
        assert [c.name for c in r.criteria] == [
            "golden_queries",
            "latency_p95",
            "shadow_error_rate",
            "vram",
            "semantic_similarity",
            "judge_loss_rate",
            "embedding_parity",
            "structured_output_validity",
        ]
        assert r.criteria[3].detail == "no GPU telemetry"
        assert r.criteria[4].verdict == control_pb2.VERDICT_INCONCLUSIVE  # no scored pairs
        assert r.criteria[5].value == "not configured"  # the judge is optional
        assert r.criteria[6].value == "Embed stays on Ollama"
        # Steps before PRIMARY are not gated.
        await stub.Promote(control_pb2.PromoteRequest(meta=meta()))
        snap = (await stub.Promote(control_pb2.PromoteRequest(meta=meta()))).snapshot
        assert snap.migration.phase == control_pb2.PHASE_SPLIT
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.Promote(control_pb2.PromoteRequest(meta=meta(), full=True))
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(exc.value).reason == "ILLEGAL_TRANSITION"
        assert "the go/no-go gate says INCONCLUSIVE" in (exc.value.details() or "")

        # Prepare GO: a router reports healthy vLLM traffic, answered and mirrored, the golden
        # queries pass on the simulated vLLM, and the VRAM source reports a stable GPU.
        router = RawRouter(stub, "r1")
        version = (await router.next_snapshot()).version
        router.ack(version)
        router.send(
            control_pb2.RouterSessionRequest(
                stats=_stats(version, requests=40, errors=0, shadow=False)
            )
        )
        mirrored = _stats(version, requests=100, errors=0, shadow=True)
        mirrored.shadow_comparisons.extend(_scored(30, cosine=0.93))
        router.send(control_pb2.RouterSessionRequest(stats=mirrored))
        await wait_until(control, lambda: control.app.stats.reports_received == 2)
        vram.observation = STABLE
        r = await stub.EvaluateGoNoGo(control_pb2.EvaluateGoNoGoRequest(run_golden=True))
        assert [c.verdict for c in r.criteria] == [control_pb2.VERDICT_GO] * 8, r
        assert r.verdict == control_pb2.VERDICT_GO
        snap = (await stub.Promote(control_pb2.PromoteRequest(meta=meta(), full=True))).snapshot
        assert snap.migration.phase == control_pb2.PHASE_PRIMARY
        event = (await stub.ListEvents(control_pb2.ListEventsRequest(page_size=1))).events[0]
        assert (event.action, event.reason) == ("promote", "test")
        assert json.loads(event.after_json)["evidence"]["gate"]["verdict"] == "GO"

        # NO-GO (shadow errors over 5 %): refused, then forced with a reason, audited.
        await stub.Undo(control_pb2.UndoRequest(meta=meta()))
        router.send(
            control_pb2.RouterSessionRequest(
                stats=_stats(version, requests=100, errors=20, shadow=True)
            )
        )
        await wait_until(control, lambda: control.app.stats.reports_received == 3)
        r = await stub.EvaluateGoNoGo(control_pb2.EvaluateGoNoGoRequest())
        assert r.verdict == control_pb2.VERDICT_NO_GO
        assert r.criteria[2].value == "10.00% (20/200)"
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.Promote(control_pb2.PromoteRequest(meta=meta()))
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "NO-GO (shadow_error_rate NO-GO" in (exc.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.Promote(control_pb2.PromoteRequest(meta=meta(reason=""), force=True))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        forced = await stub.Promote(
            control_pb2.PromoteRequest(meta=meta(reason="accepted by on-call"), force=True)
        )
        assert forced.snapshot.migration.phase == control_pb2.PHASE_PRIMARY
        event = (await stub.ListEvents(control_pb2.ListEventsRequest(page_size=1))).events[0]
        assert event.reason.startswith("forced past the go/no-go gate, NO-GO (shadow_error_rate")
        assert event.reason.endswith(": accepted by on-call")
        evidence = json.loads(event.after_json)["evidence"]
        assert evidence["forced"] is True
        assert evidence["gate"]["criteria"][2]["verdict"] == "NO-GO"
        router.close()
    finally:
        await control.close()


@pytest.mark.parametrize(
    ("counts", "verdict"),
    [
        (StructuredValidity(), Verdict.GO),  # no structured requests mirrored
        (StructuredValidity(5, 5, 5, 5), Verdict.INCONCLUSIVE),  # too few pairs
        (StructuredValidity(40, 40, 38, 40), Verdict.GO),  # vLLM better
        (StructuredValidity(38, 40, 38, 40), Verdict.GO),  # equal
        (StructuredValidity(36, 40, 39, 40), Verdict.NO_GO),  # vLLM worse
    ],
)
def test_structured_output_validity_on_vllm_must_be_at_least_ollamas(
    counts: StructuredValidity, verdict: Verdict
) -> None:
    c = structured_output_validity(GateThresholds(), GateInputs(60.0, 0.0, structured=counts))
    assert c.verdict is verdict
    assert c.name == "structured_output_validity"
    if counts.vllm_total:
        assert f"({counts.vllm_valid}/{counts.vllm_total})" in c.value
