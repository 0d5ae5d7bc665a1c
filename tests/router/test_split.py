"""The traffic split: share, stickiness, monotone ramps, independence; per-task overrides."""

from __future__ import annotations

from dataclasses import replace

import pytest

from router_service.catalog import Catalog
from router_service.config.routing import bootstrap_config
from router_service.placement import choose_provider, plan
from router_service.settings import RouterSettings
from router_service.split import BUCKETS, bucket, in_share

KEYS = [f"memos-query-{i}" for i in range(100_000)]


@pytest.mark.parametrize("percent", [10.0, 30.0, 70.0])
def test_measured_share_is_within_one_point(percent: float) -> None:
    share = sum(in_share(k, percent) for k in KEYS) / len(KEYS) * 100
    assert abs(share - percent) <= 1.0, share


def test_granularity_is_a_hundredth_of_a_percent() -> None:
    assert BUCKETS == 10_000
    share = sum(in_share(k, 0.5) for k in KEYS) / len(KEYS) * 100
    assert 0.3 <= share <= 0.7


def test_sticky_and_stable_across_processes() -> None:
    # Pinned values: a change of hash or salt would silently move live traffic between engines
    # (and Python's own hash() differs per process, which is why it is not used).
    assert [bucket(k) for k in ("a", "memos-query-1", "q")] == [8106, 2100, 84]
    assert in_share("q", 1)
    assert not in_share("memos-query-1", 20)
    assert in_share("memos-query-1", 21.01)


def test_raising_the_weight_only_moves_keys_to_vllm() -> None:
    previous = {k for k in KEYS if in_share(k, 10)}
    for percent in (30.0, 70.0, 99.99, 100.0):
        current = {k for k in KEYS if in_share(k, percent)}
        assert previous <= current
        previous = current
    assert len(previous) == len(KEYS)
    assert not any(in_share(k, 0) for k in KEYS[:1000])


def _catalog() -> Catalog:
    return RouterSettings().catalog()


def test_per_task_providers_override_the_split() -> None:
    cfg = bootstrap_config(_catalog(), task_providers={"embedding": "ollama", "synthesis": "vllm"})
    cfg = replace(cfg, vllm_percent=100.0)
    assert choose_provider(cfg, "embedding", "k") == "ollama"
    assert choose_provider(cfg, "analysis", "k") == "vllm"
    cfg0 = replace(cfg, vllm_percent=0.0)
    assert choose_provider(cfg0, "synthesis", "k") == "vllm"
    assert choose_provider(cfg0, "analysis", "k") == "ollama"


def test_fallback_order_in_primary_is_vllm_then_ollama() -> None:
    cfg = bootstrap_config(_catalog(), primary="ollama", fallback=None)
    cfg = replace(cfg, vllm_percent=100.0)
    got = [(c.provider, c.model, c.fallback) for c in plan(cfg, "analysis", "", None, "k")]
    assert got == [
        ("vllm", "qwen3:8b", False),
        ("vllm", "llama3.2:3b", True),
        ("vllm", "gemma3:4b", True),
        ("ollama", "qwen3:8b", True),
        ("ollama", "llama3.2:3b", True),
        ("ollama", "gemma3:4b", True),
    ]


def test_no_engine_fallback_from_the_primary_without_a_fallback_provider() -> None:
    cfg = bootstrap_config(_catalog(), primary="ollama", fallback=None)
    assert {c.provider for c in plan(cfg, "analysis", "", None, "k")} == {"ollama"}
