"""The per-kind first-token times of one stream, and the new stream events as protos.

Time to first token counts a token of any kind (a thinking model may stream reasoning for
minutes before its first answer token); the first reasoning and the first answer (text or a
tool call) are reported apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from clients.gen.llmgateway.v1 import router_pb2
from router_service.values import TokenLogprob, ToolCallFragment


class FirstTokens:
    def __init__(self, t0: float) -> None:
        self._t0 = t0
        self.first_reasoning: float | None = None
        self.first_answer: float | None = None
        self.reasoning_tokens = 0

    def reasoning(self, tokens: int) -> None:
        self.reasoning_tokens += tokens
        if self.first_reasoning is None:
            self.first_reasoning = time.perf_counter() - self._t0

    def answer(self) -> None:
        if self.first_answer is None:
            self.first_answer = time.perf_counter() - self._t0

    def fill(self, end: router_pb2.GenerateEnd, engine_reasoning_tokens: int | None) -> None:
        """The per-kind times and the reasoning count (the engine's own when it gives one)."""
        if self.first_reasoning is not None:
            end.timings.time_to_first_reasoning_ms = self.first_reasoning * 1000
        if self.first_answer is not None:
            end.timings.time_to_first_answer_ms = self.first_answer * 1000
        count = engine_reasoning_tokens
        end.usage.reasoning_tokens = self.reasoning_tokens if count is None else count


def tool_call_to_proto(f: ToolCallFragment) -> router_pb2.ToolCallDelta:
    return router_pb2.ToolCallDelta(
        index=f.index, id=f.id, name=f.name, arguments_fragment=f.arguments
    )


def logprobs_to_proto(items: Iterable[TokenLogprob]) -> list[router_pb2.TokenLogprob]:
    return [
        router_pb2.TokenLogprob(
            token=t.token,
            logprob=t.logprob,
            top=[router_pb2.TopLogprob(token=x.token, logprob=x.logprob) for x in t.top],
        )
        for t in items
    ]
