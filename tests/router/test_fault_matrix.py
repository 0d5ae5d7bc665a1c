"""The fault matrix: every way an engine misbehaves, for both engine flavours (Ollama NDJSON and
OpenAI-compatible SSE), against an engine of the test's own over real sockets (``FaultEngine``),
a real router and a real control service in-process.

Each case asserts what the user gets (status, ErrorInfo code, the ``x-request-id`` trailer,
elapsed time with a generous margin), what is counted against the engine (the outcomes the
stats recorder consumed, and its consecutive-timeout counter), and, where it applies (the rules
watch vLLM in SPLIT), whether the automatic rollback fires. Stream timeouts are 0.4 s here
(settings), so the matrix runs in seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from control_service.state import RolloutStatus
from llmcore.vocabulary import ProviderName
from tests.router.fault_engine import ANSWER, Fault
from tests.router.fault_stack import ATTEMPTS, FIRST_TOKEN_S, IDLE_S, PROTO, Stack, start_stack

FULL = "".join(ANSWER)
OTHER: dict[ProviderName, ProviderName] = {"ollama": "vllm", "vllm": "ollama"}


@dataclass(frozen=True)
class Case:
    fault: Fault
    status: grpc.StatusCode  # what the user of a pinned engine (no fallback) gets
    code: str  # ErrorInfo metadata "code"
    outcome: str  # what is counted against the engine
    partial: str  # text the pinned user got before the error
    within_s: float  # elapsed bound of the pinned call (generous)
    continued: bool  # with a fallback: continued mid-stream (else a plain fallback)


_FIRST = ATTEMPTS * FIRST_TOKEN_S + 2.0
CASES: dict[str, Case] = {
    "stall-before-first-token": Case(
        Fault("hang"), grpc.StatusCode.DEADLINE_EXCEEDED, "ERR_5002",
        "first_token_timeout", "", _FIRST, False,
    ),
    "headers-then-silence": Case(
        Fault("headers"), grpc.StatusCode.DEADLINE_EXCEEDED, "ERR_5002",
        "first_token_timeout", "", _FIRST, False,
    ),
    "endless-empty-deltas": Case(
        Fault("empty"), grpc.StatusCode.DEADLINE_EXCEEDED, "ERR_5002",
        "first_token_timeout", "", _FIRST, False,
    ),
    "html-502": Case(
        Fault("html502"), grpc.StatusCode.UNAVAILABLE, "ERR_5001",
        "engine_error", "", 2.0, False,
    ),
    "stall-after-first-token": Case(
        Fault("stall", after=2), grpc.StatusCode.DEADLINE_EXCEEDED, "ERR_5002",
        "idle_timeout", "The sky", IDLE_S + 2.0, True,
    ),
    "slow-trickle": Case(
        Fault("trickle", after=2, trickle_s=0.15), grpc.StatusCode.DEADLINE_EXCEEDED,
        "ERR_5002", "idle_timeout", "The sky", IDLE_S + 2.0, True,
    ),
    "reset-mid-stream": Case(
        Fault("reset", after=2), grpc.StatusCode.UNAVAILABLE, "ERR_5001",
        "engine_error", "The sky", 2.0, True,
    ),
}  # fmt: skip


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    s = await start_stack(tmp_path)
    yield s
    await s.close()


@pytest.mark.parametrize("flavor", ["ollama", "vllm"])
@pytest.mark.parametrize("name", list(CASES))
async def test_fault(stack: Stack, flavor: ProviderName, name: str) -> None:
    case = CASES[name]
    other = OTHER[flavor]
    if flavor == "vllm":
        await stack.split(99)  # vLLM answers (keys in its share), Ollama is its fallback
    bad = stack.engines[flavor]
    bad.default = case.fault

    # Pinned to the failing engine: no fallback, the user gets the error.
    pinned = await stack.generate(f"{name}-pinned", provider=flavor)
    assert pinned.error is not None, pinned.collected.kinds
    assert pinned.error.code is case.status, pinned.error
    assert pinned.error.metadata["code"] == case.code
    assert pinned.error.metadata["provider"] == flavor
    assert pinned.error.metadata["request_id"] == f"{name}-pinned"
    assert pinned.trailers["x-request-id"] == f"{name}-pinned"
    assert pinned.trailers["x-error-code"] == case.code
    assert pinned.collected.text == case.partial
    assert pinned.elapsed_s < case.within_s
    assert stack.of(flavor) == [case.outcome]

    # With the fallback engine: the user sees no error and the whole answer, once.
    saved = await stack.generate(f"{name}-saved")
    assert saved.error is None, saved.error
    assert saved.collected.text == FULL
    end = saved.collected.end
    if case.continued:
        assert saved.collected.start.provider == PROTO[flavor]
        (cont,) = end.continuations
        assert (cont.from_provider, cont.provider) == (PROTO[flavor], PROTO[other])
        assert cont.offset_chars == len(case.partial)
        want = common_pb2.ERROR_CODE_LLM_TIMEOUT
        if case.code == "ERR_5001":
            want = common_pb2.ERROR_CODE_LLM_UNAVAILABLE
        assert cont.reason == want
        assert stack.engines[other].bodies[-1]["messages"][-1] == {
            "role": "assistant",
            "content": case.partial,
        }
    else:
        assert saved.collected.start.provider == PROTO[other]
        assert saved.collected.start.fallback
        assert not end.continuations
    # The failure still counts against the failing engine; the fallback's answer for its own.
    assert stack.of(flavor) == [case.outcome] * 2
    assert stack.of(other) == ["ok"]
    timeouts = 2 if case.outcome.endswith("timeout") else 0
    assert stack.router.recorder.consecutive_timeouts(flavor) == timeouts

    if flavor == "vllm":
        # A third failure: three timeouts in a row, or an error rate of 100% over 3 requests.
        await stack.generate(f"{name}-third")
        await stack.until(lambda: stack.status is RolloutStatus.ABORTED)
        events = await stack.control.stub.ListEvents(control_pb2.ListEventsRequest(page_size=1))
        event = events.events[0]
        rule = "consecutive_timeouts" if timeouts else "error_rate"
        assert event.action == "rollback"
        assert f"{rule}: " in event.reason, event.reason
    await bad.wait_idle()  # every stream the router gave up on was closed
