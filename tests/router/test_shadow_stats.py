"""Shadow comparisons in the recorder and in the StatsReport the subscriber sends."""

from __future__ import annotations

import random

from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from router_service.config.reports import build_report
from router_service.errors import ErrorKind
from router_service.request_stats import RequestStatsRecorder, ShadowRecord


def _pair(i: int, **kw: object) -> ShadowRecord:
    base: dict[str, object] = {
        "request_id": f"r{i}",
        "task": "analysis",
        "model": "qwen3:8b",
        "primary_provider": "ollama",
        "shadow_provider": "vllm",
        "primary_ok": True,
        "shadow_ok": True,
    }
    base.update(kw)
    return ShadowRecord(**base)  # type: ignore[arg-type]


def test_pairs_are_bounded_per_interval_and_the_rest_counted() -> None:
    rec = RequestStatsRecorder(max_shadow_pairs=500, rng=random.Random(7))
    for i in range(1_200):
        rec.record_shadow(_pair(i))
    for i in range(3):
        rec.record_shadow(_pair(10_000 + i, dropped=True))
    drained = rec.drain()
    kept = [r for r in drained.shadow_comparisons if not r.dropped]
    assert len(kept) == 500
    assert drained.shadow_omitted == 700
    assert drained.shadow_dropped == 3
    assert len([r for r in drained.shadow_comparisons if r.dropped]) == 3
    # Reservoir sampling: the kept pairs come from the whole interval, not only its start.
    assert max(int(r.request_id[1:]) for r in kept) > 1_000
    assert len({r.request_id for r in kept}) == 500
    # The next interval starts empty.
    empty = rec.drain()
    assert not empty
    assert empty.shadow_comparisons == []
    assert empty.shadow_dropped == 0


def test_dropped_entries_are_bounded_but_the_count_is_exact() -> None:
    rec = RequestStatsRecorder(max_shadow_pairs=10)
    for i in range(25):
        rec.record_shadow(_pair(i, dropped=True))
    drained = rec.drain()
    assert drained.shadow_dropped == 25
    assert len(drained.shadow_comparisons) == 10
    assert drained  # only shadow data: still a report


def test_report_carries_comparisons_and_the_dropped_count() -> None:
    rec = RequestStatsRecorder()
    rec.record("vllm", "analysis", ErrorKind.LLM_TIMEOUT, None, 500.0, shadow=True)
    rec.record_shadow(
        _pair(
            1,
            shadow_ok=False,
            shadow_error=ErrorKind.LLM_TIMEOUT,
            primary_ttft_ms=12.5,
            primary_tokens_per_second=40.0,
        )
    )
    rec.record_shadow(
        _pair(
            2,
            task="synthesis",
            model="deepseek-r1:14b",
            primary_ttft_ms=10.0,
            shadow_ttft_ms=4.0,
            primary_tokens_per_second=24.0,
            shadow_tokens_per_second=60.0,
            length_ratio=1.25,
            text_similarity=0.5,
            embedding_cosine=0.875,
            prompt="why?",
            primary_text="because",
            shadow_text="since",
            routing_key="query-9",
            json_field_agreement=0.5,
            json_equal=False,
            judge_verdict="primary_better",
            judge_swap_agreed=True,
        )
    )
    rec.record_shadow(_pair(3, dropped=True))
    report = build_report(rec.drain(), rec, 7, 100.0, 110.0)
    assert report.shadow_dropped == 1
    assert [c.request_id for c in report.shadow_comparisons] == ["r1", "r2", "r3"]
    failed, good, dropped = report.shadow_comparisons
    assert failed.primary_ok
    assert not failed.shadow_ok
    assert failed.shadow_error_code == common_pb2.ERROR_CODE_LLM_TIMEOUT
    assert failed.primary_ttft_ms == 12.5
    assert not failed.HasField("embedding_cosine")
    assert good.task == common_pb2.TASK_SYNTHESIS
    assert good.model == "deepseek-r1:14b"
    assert good.primary_provider == common_pb2.PROVIDER_OLLAMA
    assert good.shadow_provider == common_pb2.PROVIDER_VLLM
    assert (good.shadow_ttft_ms, good.shadow_tokens_per_second) == (4.0, 60.0)
    assert (good.length_ratio, good.text_similarity) == (1.25, 0.5)
    assert good.HasField("embedding_cosine")
    assert good.embedding_cosine == 0.875
    assert (good.prompt, good.primary_text, good.shadow_text) == ("why?", "because", "since")
    # The meaning figures travel with the pair (issue 16); absent ones stay absent.
    assert good.routing_key == "query-9"
    assert (good.json_field_agreement, good.json_equal) == (0.5, False)
    assert good.judge_verdict == control_pb2.JUDGE_VERDICT_PRIMARY_BETTER
    assert good.judge_swap_agreed is True
    assert not failed.HasField("json_equal")
    assert not failed.HasField("judge_swap_agreed")
    assert failed.judge_verdict == control_pb2.JUDGE_VERDICT_UNSPECIFIED
    assert dropped.dropped
    assert not dropped.shadow_ok
    # The shadow request itself is in the stats, flagged so it never counts toward the SLOs.
    (stats,) = report.stats
    assert stats.shadow
    assert stats.timeouts == 1
    assert stats.consecutive_timeouts == 0
