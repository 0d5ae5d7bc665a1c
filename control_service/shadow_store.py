"""The shadow comparisons routers report, kept for a bounded time and count, and the report
``GetShadowReport`` answers from them.

Each compared pair arrives in a router's ``StatsReport`` and is filed under the control
service's clock when it arrives (as ``stats_windows`` does, so router clock skew cannot move a
pair between windows). The store keeps at most ``max_pairs`` pairs (oldest out first) and none
older than ``retention_s``. Routers send a uniform sample of at most N pairs per report and an
exact count of dropped mirrors with a (sampled) entry per drop; the exact count is spread over
the task/model groups of those entries in proportion, so per-group drop counts stay exact below
the routers' per-report bound and unbiased above it.

The report, per task and model: pairs, dropped mirrors, success rates, and medians or deciles of
the figures of pairs where both sides succeeded (a failed side has no comparable text or timing);
the worst pairs by text similarity among those; and the shadow error rate over every pair.
Quantiles interpolate linearly between closest ranks (numpy's default).

Plain Python over the generated messages (protobuf, no grpc).
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from llmcore.stats import percentile

DEFAULT_WORST = 10

GroupKey = tuple[int, str]  # (proto Task value, logical model)


def quantile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100, :func:`llmcore.stats.percentile`); 0.0 when there are no
    values (the report's proto fields have no "absent")."""
    value = percentile(values, q)
    return 0.0 if value is None else value


def spread(total: int, weights: Counter[GroupKey]) -> dict[GroupKey, int]:
    """``total`` split over ``weights`` in proportion, in whole numbers that add up to ``total``
    (largest remainder; ties by key)."""
    n = sum(weights.values())
    if n == 0:
        return {}
    shares = {k: total * w / n for k, w in weights.items()}
    out = {k: math.floor(v) for k, v in shares.items()}
    left = total - sum(out.values())
    for k in sorted(shares, key=lambda k: (out[k] - shares[k], k))[:left]:
        out[k] += 1
    return out


@dataclass(frozen=True, slots=True)
class _Pair:
    at: float
    router_id: str
    msg: control_pb2.ShadowComparison


@dataclass(frozen=True, slots=True)
class _Drops:
    at: float
    key: GroupKey
    count: int


class ShadowStore:
    """Bounded, time-windowed shadow comparisons. Single-threaded (the event loop's)."""

    def __init__(
        self,
        retention_s: float = 900.0,
        max_pairs: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._retention_s = retention_s
        self._clock = clock
        self._pairs: deque[_Pair] = deque(maxlen=max_pairs)
        self._drops: deque[_Drops] = deque(maxlen=max_pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def add(self, router_id: str, report: control_pb2.StatsReport) -> None:
        """File the comparisons and drops of one router's stats report."""
        now = self._clock()
        dropped: Counter[GroupKey] = Counter()
        for c in report.shadow_comparisons:
            if c.dropped:
                dropped[(c.task, c.model)] += 1
            else:
                self._pairs.append(_Pair(now, router_id, c))
        total = max(report.shadow_dropped, sum(dropped.values()))
        if total and not dropped:
            dropped[(common_pb2.TASK_UNSPECIFIED, "")] = 1  # counted, but no entry came
        for key, count in spread(total, dropped).items():
            if count:
                self._drops.append(_Drops(now, key, count))
        self._evict(now)

    def _evict(self, now: float) -> None:
        horizon = now - self._retention_s
        while self._pairs and self._pairs[0].at < horizon:
            self._pairs.popleft()
        while self._drops and self._drops[0].at < horizon:
            self._drops.popleft()

    def pairs(self, window_s: float = 0.0) -> list[control_pb2.ShadowComparison]:
        """The compared pairs of the last ``window_s`` seconds (0: everything retained)."""
        now = self._clock()
        self._evict(now)
        since = now - window_s if window_s > 0 else -math.inf
        return [p.msg for p in self._pairs if p.at >= since]

    def report(
        self, window_s: float = 0.0, worst: int = DEFAULT_WORST, by_episode: bool = False
    ) -> control_pb2.GetShadowReportResponse:
        """Comparisons of the last ``window_s`` seconds (0: everything retained)."""
        now = self._clock()
        self._evict(now)
        since = now - window_s if window_s > 0 else -math.inf
        pairs = [p.msg for p in self._pairs if p.at >= since]
        drops: Counter[GroupKey] = Counter()
        for d in self._drops:
            if d.at >= since:
                drops[d.key] += d.count
        by_group: dict[GroupKey, list[control_pb2.ShadowComparison]] = {}
        for msg in pairs:
            by_group.setdefault((msg.task, msg.model), []).append(msg)
        keys = sorted(by_group.keys() | drops.keys())
        out = control_pb2.GetShadowReportResponse(
            groups=[_group(k, by_group.get(k, []), drops[k]) for k in keys],
            shadow_error_rate=_rate(pairs, lambda m: not m.shadow_ok),
        )
        both = [m for m in pairs if m.primary_ok and m.shadow_ok]
        # Lowest similarity first; among equals, the latest (stable sort over arrival order).
        ranked = sorted(reversed(both), key=lambda m: m.text_similarity)
        out.worst_pairs.extend(ranked[:worst])
        if by_episode:
            out.episodes.extend(episodes(pairs))
        return out

    def schema_validity(self, window_s: float) -> dict[int, tuple[int, int]]:
        """Per engine (proto Provider value): (schema-valid answers, answers) over the JSON
        pairs of the last ``window_s`` seconds where both sides succeeded; each side of a pair
        counts for the engine that gave it (the go/no-go structured-output criterion)."""
        since = self._clock() - window_s
        out: dict[int, list[int]] = {}
        for p in self._pairs:
            m = p.msg
            if p.at < since or m.output_kind != "json" or not (m.primary_ok and m.shadow_ok):
                continue
            for provider, valid in (
                (m.primary_provider, m.primary_schema_valid),
                (m.shadow_provider, m.shadow_schema_valid),
            ):
                counts = out.setdefault(provider, [0, 0])
                counts[0] += int(valid)
                counts[1] += 1
        return {k: (v[0], v[1]) for k, v in out.items()}


def _rate(
    msgs: Sequence[control_pb2.ShadowComparison],
    pred: Callable[[control_pb2.ShadowComparison], bool],
) -> float:
    return sum(1 for m in msgs if pred(m)) / len(msgs) if msgs else 0.0


def _p50(values: Iterable[float]) -> float:
    return quantile(values, 50)


def _group(
    key: GroupKey, msgs: list[control_pb2.ShadowComparison], dropped: int
) -> control_pb2.ShadowGroupReport:
    both = [m for m in msgs if m.primary_ok and m.shadow_ok]
    similarity = [m.text_similarity for m in both]
    semantic = [m.embedding_cosine for m in both if m.HasField("embedding_cosine")]
    jsons = [m for m in both if m.HasField("json_equal")]
    fields = [m.json_field_agreement for m in jsons if m.HasField("json_field_agreement")]
    verdicts = Counter(m.judge_verdict for m in both)
    swaps = [m.judge_swap_agreed for m in both if m.HasField("judge_swap_agreed")]
    out = control_pb2.ShadowGroupReport(
        task=common_pb2.Task.ValueType(key[0]),
        model=key[1],
        pairs=len(msgs),
        dropped=dropped,
        primary_success_rate=_rate(msgs, lambda m: m.primary_ok),
        shadow_success_rate=_rate(msgs, lambda m: m.shadow_ok),
        ttft_delta_ms_p50=_p50(m.shadow_ttft_ms - m.primary_ttft_ms for m in both),
        tokens_per_second_delta_p50=_p50(
            m.shadow_tokens_per_second - m.primary_tokens_per_second for m in both
        ),
        similarity_p10=quantile(similarity, 10),
        similarity_p50=quantile(similarity, 50),
        similarity_p90=quantile(similarity, 90),
        length_ratio_p50=_p50(m.length_ratio for m in both),
        embedding_cosine_p50=_p50(semantic),
        embedding_cosine_p10=quantile(semantic, 10),
        semantic_pairs=len(semantic),
        semantic_dropped=sum(1 for m in msgs if m.semantic_dropped),
        json_pairs=len(jsons),
        json_field_agreement_mean=sum(fields) / len(fields) if fields else 0.0,
        json_equal_rate=_rate(jsons, lambda m: m.json_equal),
        judge_wins=verdicts[control_pb2.JUDGE_VERDICT_SHADOW_BETTER],
        judge_ties=verdicts[control_pb2.JUDGE_VERDICT_TIE],
        judge_losses=verdicts[control_pb2.JUDGE_VERDICT_PRIMARY_BETTER],
        judge_unjudged=verdicts[control_pb2.JUDGE_VERDICT_UNJUDGED],
        judge_swap_checks=len(swaps),
        judge_swap_agreement=sum(swaps) / len(swaps) if swaps else 0.0,
    )
    _kind_figures(out, msgs, both)
    return out


def _kind_figures(
    out: control_pb2.ShadowGroupReport,
    msgs: list[control_pb2.ShadowComparison],
    both: list[control_pb2.ShadowComparison],
) -> None:
    """Parity by output kind: JSON validity per side, tool-call agreement, reasoning length,
    LENGTH finishes (over each side's successes)."""
    structured = [m for m in msgs if m.output_kind == "json"]
    json_both = [m for m in both if m.output_kind == "json"]
    tools = [m for m in both if m.HasField("tool_calls_agree")]
    reasoned = [m.reasoning_length_ratio for m in both if m.HasField("reasoning_length_ratio")]
    primary_ok = [m for m in msgs if m.primary_ok]
    shadow_ok = [m for m in msgs if m.shadow_ok]
    out.structured_pairs = len(structured)
    out.primary_json_valid_rate = _rate(json_both, lambda m: m.primary_json_valid)
    out.shadow_json_valid_rate = _rate(json_both, lambda m: m.shadow_json_valid)
    out.primary_schema_valid_rate = _rate(json_both, lambda m: m.primary_schema_valid)
    out.shadow_schema_valid_rate = _rate(json_both, lambda m: m.shadow_schema_valid)
    out.tool_call_pairs = len(tools)
    out.tool_call_agreement_rate = _rate(tools, lambda m: m.tool_calls_agree)
    out.reasoning_pairs = len(reasoned)
    out.reasoning_length_ratio_p50 = _p50(reasoned)
    out.primary_length_finish_rate = _rate(primary_ok, lambda m: m.primary_finish_length)
    out.shadow_length_finish_rate = _rate(shadow_ok, lambda m: m.shadow_finish_length)


MAX_EPISODES = 100


def episodes(
    msgs: Iterable[control_pb2.ShadowComparison],
) -> list[control_pb2.ShadowEpisodeReport]:
    """Pairs grouped by episode (routing key), worst first: by the lowest semantic similarity
    of the episode when it has one, else by its lowest text similarity."""
    by_key: dict[str, list[control_pb2.ShadowComparison]] = {}
    for m in msgs:
        by_key.setdefault(m.routing_key or m.request_id, []).append(m)
    out: list[control_pb2.ShadowEpisodeReport] = []
    for key, group in by_key.items():
        both = [m for m in group if m.primary_ok and m.shadow_ok]
        sem = [m.embedding_cosine for m in both if m.HasField("embedding_cosine")]
        tasks: list[common_pb2.Task.ValueType] = []
        for m in group:
            if m.task not in tasks:
                tasks.append(m.task)
        ep = control_pb2.ShadowEpisodeReport(
            routing_key=key,
            pairs=len(group),
            shadow_failures=sum(1 for m in group if not m.shadow_ok),
            similarity_min=min((m.text_similarity for m in both), default=0.0),
            tasks=tasks,
        )
        if sem:
            ep.semantic_min = min(sem)
        out.append(ep)
    out.sort(key=lambda e: e.semantic_min if e.HasField("semantic_min") else e.similarity_min)
    return out[:MAX_EPISODES]
