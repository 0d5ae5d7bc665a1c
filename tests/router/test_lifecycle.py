"""The request lifecycle's rules on their own: how each outcome is counted, one outcome per
engine per request, and Embed's failed-over attempts reported against their engine."""

from __future__ import annotations

import pytest

from clients.gen.llmgateway.v1 import router_pb2
from llmcore.vocabulary import TaskName
from router_service.errors import ErrorKind, RouterError
from router_service.lifecycle import AttemptOutcome, Outcome, RequestLife, counting
from router_service.request_stats import RequestStatsRecorder
from tests.router.conftest import Harness
from tests.router.fake_engine import Script


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _life(recorder: RequestStatsRecorder, clock: _Clock) -> RequestLife:
    return RequestLife("analysis", recorder, silent_after_s=1.0, clock=clock)


@pytest.mark.parametrize(
    ("outcome", "counted", "error", "resets"),
    [
        (Outcome.OK, True, None, True),
        (Outcome.FIRST_TOKEN_TIMEOUT, True, ErrorKind.LLM_TIMEOUT, False),
        (Outcome.IDLE_TIMEOUT, True, ErrorKind.LLM_TIMEOUT, False),
        (Outcome.DEADLINE_SILENT, True, ErrorKind.LLM_TIMEOUT, False),
        (Outcome.DEADLINE_STREAMING, True, None, False),
        (Outcome.CANCELLED, False, None, False),
    ],
)
def test_counting(outcome: Outcome, counted: bool, error: ErrorKind | None, resets: bool) -> None:
    how = counting(outcome)
    assert how is not None
    assert (how.request, how.error, how.resets_timeouts) == (counted, error, resets)


def test_rejected_and_shed_are_no_engines_business() -> None:
    assert counting(Outcome.REJECTED) is None
    assert counting(Outcome.SHED) is None
    how = counting(Outcome.ENGINE_ERROR, ErrorKind.LLM_INVALID_RESPONSE)
    assert how is not None
    assert how.error is ErrorKind.LLM_INVALID_RESPONSE
    assert not how.timeout


def test_recorder_counts_outcomes_as_the_table_says() -> None:
    rec = RequestStatsRecorder()
    task: TaskName = "analysis"
    for o in (Outcome.IDLE_TIMEOUT, Outcome.DEADLINE_SILENT):
        rec.record_outcome(task, AttemptOutcome("vllm", o))
    rec.record_outcome(task, AttemptOutcome("vllm", Outcome.CANCELLED))
    rec.record_outcome(task, AttemptOutcome("vllm", Outcome.DEADLINE_STREAMING, ttft_ms=80))
    assert rec.consecutive_timeouts("vllm") == 2  # neither cancel nor client deadline reset it
    rec.record_outcome(task, AttemptOutcome("vllm", Outcome.OK))
    assert rec.consecutive_timeouts("vllm") == 0
    agg = rec.drain().aggregates[("vllm", "analysis", False)]
    assert (agg.requests, agg.errors, agg.timeouts) == (4, 2, 2)
    assert (agg.cancelled, agg.client_deadlines) == (1, 1)


def test_one_outcome_per_engine_the_last_attempt() -> None:
    rec, clock = RequestStatsRecorder(), _Clock()
    life = _life(rec, clock)
    err = RouterError(ErrorKind.LLM_UNAVAILABLE, "503", "vllm")
    life.fail(life.begin("vllm", "m"), err)
    life.succeed(life.begin("vllm", "m"), 3, 4)  # the retry answered: the engine did
    life.finish(deadline_expired=False)
    assert [o.outcome for o in life.reported] == [Outcome.OK]
    life = _life(rec, clock)
    life.fail(life.begin("vllm", "m"), err)
    life.fail(life.begin("vllm", "m"), err)
    life.begin("ollama", "m")  # fell over: vLLM's failure is reported now
    assert [(o.provider, o.outcome) for o in life.reported] == [("vllm", Outcome.ENGINE_ERROR)]
    clock.now = 5.0
    assert life.finish(deadline_expired=False) is Outcome.CANCELLED


def test_deadline_silent_or_streaming_by_the_last_token() -> None:
    rec, clock = RequestStatsRecorder(), _Clock()
    life = _life(rec, clock)
    a = life.begin("ollama", "m")
    clock.now = 3.0
    assert life.finish(deadline_expired=True) is Outcome.DEADLINE_SILENT  # no token yet
    life = _life(rec, clock)
    a = life.begin("ollama", "m")
    life.progress(a, 1)
    clock.now = 3.5
    assert life.finish(deadline_expired=True) is Outcome.DEADLINE_STREAMING  # 0.5 s ago
    life = _life(rec, clock)
    a = life.begin("ollama", "m")
    life.progress(a, 1)
    clock.now = 5.0
    assert life.deadline(a) is Outcome.DEADLINE_SILENT  # 1.5 s without a token


async def test_embed_fallback_reports_the_engine_it_fell_back_from(harness: Harness) -> None:
    seen: list[AttemptOutcome] = []
    harness.app.recorder.outcome_observers.append(lambda _t, o: seen.append(o))
    harness.ollama.default = Script(status=503)
    resp = await harness.stub.Embed(router_pb2.EmbedRequest(inputs=["a"], request_id="e-fb"))
    assert resp.fallback
    assert [(o.provider, o.outcome, o.error) for o in seen] == [
        ("ollama", Outcome.ENGINE_ERROR, ErrorKind.LLM_UNAVAILABLE),
        ("vllm", Outcome.OK, None),
    ]
