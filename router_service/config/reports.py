"""Drained request stats → the ``StatsReport`` a router sends on its session."""

from __future__ import annotations

import logging

from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from llmcore.vocabulary import ProviderName, TaskName
from router_service.errors import ErrorKind
from router_service.request_stats import Drained, Histogram, RequestStatsRecorder, ShadowRecord

log = logging.getLogger(__name__)

_PROVIDER: dict[ProviderName, common_pb2.Provider.ValueType] = {
    "ollama": common_pb2.PROVIDER_OLLAMA,
    "vllm": common_pb2.PROVIDER_VLLM,
}
_TASK: dict[TaskName, common_pb2.Task.ValueType] = {
    "classification": common_pb2.TASK_CLASSIFICATION,
    "analysis": common_pb2.TASK_ANALYSIS,
    "synthesis": common_pb2.TASK_SYNTHESIS,
    "reflection": common_pb2.TASK_REFLECTION,
    "retrieval_evaluation": common_pb2.TASK_RETRIEVAL_EVALUATION,
    "verification": common_pb2.TASK_VERIFICATION,
    "embedding": common_pb2.TASK_EMBEDDING,
}


_VERDICT: dict[str, control_pb2.JudgeVerdict.ValueType] = {
    "shadow_better": control_pb2.JUDGE_VERDICT_SHADOW_BETTER,
    "tie": control_pb2.JUDGE_VERDICT_TIE,
    "primary_better": control_pb2.JUDGE_VERDICT_PRIMARY_BETTER,
    "unjudged": control_pb2.JUDGE_VERDICT_UNJUDGED,
}


def _code(kind: ErrorKind) -> common_pb2.ErrorCode.ValueType:
    return common_pb2.ErrorCode.Value(f"ERROR_CODE_{kind.value}")


def _histogram(h: Histogram) -> control_pb2.Histogram:
    return control_pb2.Histogram(upper_bounds=h.bounds, counts=h.counts, sum=h.total)


def _comparison(r: ShadowRecord) -> control_pb2.ShadowComparison:
    msg = control_pb2.ShadowComparison(
        request_id=r.request_id,
        task=_TASK[r.task],
        model=r.model,
        primary_provider=_PROVIDER[r.primary_provider],
        shadow_provider=_PROVIDER[r.shadow_provider],
        dropped=r.dropped,
        routing_key=r.routing_key,
    )
    if r.dropped:
        return msg
    msg.primary_ok = r.primary_ok
    msg.shadow_ok = r.shadow_ok
    if r.shadow_error is not None:
        msg.shadow_error_code = _code(r.shadow_error)
    msg.primary_ttft_ms = r.primary_ttft_ms
    msg.shadow_ttft_ms = r.shadow_ttft_ms
    msg.primary_tokens_per_second = r.primary_tokens_per_second
    msg.shadow_tokens_per_second = r.shadow_tokens_per_second
    msg.length_ratio = r.length_ratio
    msg.text_similarity = r.text_similarity
    k = r.kinds
    msg.output_kind = k.output_kind
    msg.primary_json_valid = k.primary_json_valid
    msg.shadow_json_valid = k.shadow_json_valid
    msg.primary_schema_valid = k.primary_schema_valid
    msg.shadow_schema_valid = k.shadow_schema_valid
    if k.tool_calls_agree is not None:
        msg.tool_calls_agree = k.tool_calls_agree
    if k.reasoning_length_ratio is not None:
        msg.reasoning_length_ratio = k.reasoning_length_ratio
    msg.primary_finish_length = k.primary_finish_length
    msg.shadow_finish_length = k.shadow_finish_length
    if r.embedding_cosine is not None:
        msg.embedding_cosine = r.embedding_cosine
    msg.semantic_dropped = r.semantic_dropped
    if r.json_field_agreement is not None:
        msg.json_field_agreement = r.json_field_agreement
    if r.json_equal is not None:
        msg.json_equal = r.json_equal
    if r.judge_verdict is not None:
        msg.judge_verdict = _VERDICT[r.judge_verdict]
    if r.judge_swap_agreed is not None:
        msg.judge_swap_agreed = r.judge_swap_agreed
    # Empty unless the router captured content (flags.shadow_capture_content).
    msg.prompt = r.prompt
    msg.primary_text = r.primary_text
    msg.shadow_text = r.shadow_text
    return msg


def build_report(
    drained: Drained,
    recorder: RequestStatsRecorder,
    version: int,
    start: float,
    end: float,
) -> control_pb2.StatsReport:
    report = control_pb2.StatsReport(config_version=version)
    report.interval_start.FromNanoseconds(int(start * 1e9))
    report.interval_end.FromNanoseconds(int(end * 1e9))
    for (provider, task, shadow), agg in sorted(drained.aggregates.items(), key=lambda kv: kv[0]):
        report.stats.append(
            control_pb2.ProviderTaskStats(
                provider=_PROVIDER[provider],
                task=_TASK[task],
                requests=agg.requests,
                errors=agg.errors,
                errors_by_code=[
                    control_pb2.ErrorCount(code=_code(k), count=n)
                    for k, n in sorted(agg.errors_by_kind.items(), key=lambda kv: kv[0].value)
                ],
                timeouts=agg.timeouts,
                consecutive_timeouts=0 if shadow else recorder.consecutive_timeouts(provider),
                ttft_ms=_histogram(agg.ttft_ms),
                total_ms=_histogram(agg.total_ms),
                prompt_tokens=agg.prompt_tokens,
                completion_tokens=agg.completion_tokens,
                shadow=shadow,
                cancelled=agg.cancelled,
                client_deadlines=agg.client_deadlines,
            )
        )
    report.shadow_comparisons.extend(_comparison(r) for r in drained.shadow_comparisons)
    report.shadow_dropped = drained.shadow_dropped
    if drained.shadow_omitted:
        # Counts only: comparison texts are never logged.
        log.info(
            "%d shadow comparisons over the per-report bound were not sent (kept a sample of %d)",
            drained.shadow_omitted,
            len(drained.shadow_comparisons),
        )
    return report
