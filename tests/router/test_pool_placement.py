"""Placement inside an engine pool, as plain data: affinity, bounded load, screening, retries."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from router_service.pools.placement import (
    Decision,
    HashRing,
    Reason,
    ReplicaView,
    Skip,
    least_loaded,
    place,
    prefix_key,
    round_robin,
)

IDS = ("http://r1:8000", "http://r2:8000", "http://r3:8000", "http://r4:8000")


def views(**over: Mapping[str, Any]) -> list[ReplicaView]:
    """The four replicas, idle and eligible, with ``over[id]`` fields replaced."""
    return [replace(ReplicaView(rid), **over.get(rid, {})) for rid in IDS]


def test_a_key_always_lands_on_its_owner_when_the_pool_is_idle() -> None:
    ring = HashRing()
    first = place(views(), "query-42", ring)
    assert first.reason is Reason.AFFINITY
    assert first.replica in IDS
    assert first.key == "query-42"
    assert first.bound == 1  # ceil(1.25 * (0 + 1) / 4)
    assert first.skipped == ()
    for _ in range(5):
        assert place(views(), "query-42", ring) == first


def test_keys_spread_over_every_replica() -> None:
    ring = HashRing()
    owners = Counter(place(views(), f"q{i}", ring).replica for i in range(2000))
    assert set(owners) == set(IDS)
    assert min(owners.values()) > 2000 / 4 * 0.7  # virtual nodes keep the shares close


def test_removing_a_replica_moves_only_its_own_keys() -> None:
    ring = HashRing()
    before = {f"q{i}": place(views(), f"q{i}", ring).replica for i in range(500)}
    three = [v for v in views() if v.id != IDS[1]]
    after = {k: place(three, k, ring).replica for k in before}
    moved = {k for k in before if before[k] != after[k]}
    assert moved == {k for k, owner in before.items() if owner == IDS[1]}


def test_a_full_owner_spills_to_the_next_replica_on_the_ring() -> None:
    ring = HashRing()
    owner = place(views(), "hot", ring).replica
    assert owner is not None
    busy = views(**{owner: {"in_flight": 3}})
    d = place(busy, "hot", ring)
    # total 3, bound ceil(1.25 * 4 / 4) = 2: the owner (3) is at its bound.
    assert d.bound == 2
    assert d.reason is Reason.AFFINITY_SPILL
    assert d.replica != owner
    assert (owner, Skip.AT_BOUND) in d.skipped
    # The spill is consistent: the same next replica every time.
    assert place(busy, "hot", ring).replica == d.replica


def test_one_hot_key_never_puts_a_replica_above_the_bound() -> None:
    """Every request carries the same key (a shared system prompt) and stays in flight: the
    load bound spreads them so no replica exceeds ceil(1.25 * mean)."""
    ring = HashRing()
    load = dict.fromkeys(IDS, 0)
    for n in range(1, 201):
        d = place([ReplicaView(r, in_flight=load[r]) for r in IDS], "prefix:shared", ring)
        assert d.replica is not None
        load[d.replica] += 1
        assert max(load.values()) <= math.ceil(1.25 * n / len(IDS))
    # The bound is a ceiling: at most one request above 1.25x the mean.
    assert max(load.values()) <= 1.25 * (200 / 4) + 1
    assert sum(load.values()) == 200


def test_engine_reported_load_counts_when_it_exceeds_our_own() -> None:
    """Other routers' requests show in vLLM's running + waiting gauges."""
    ring = HashRing()
    owner = place(views(), "k", ring).replica
    assert owner is not None
    d = place(views(**{owner: {"engine_load": 10}}), "k", ring)
    assert d.replica != owner
    assert least_loaded(views(**{IDS[0]: {"engine_load": 5}})).replica == IDS[1]


def test_unhealthy_draining_and_open_breakers_are_skipped_with_the_reason() -> None:
    vs = views(
        **{
            IDS[0]: {"healthy": False},
            IDS[1]: {"draining": True},
            IDS[2]: {"breaker_open": True},
        }
    )
    for key in ("", "k1", "k2", "k3"):
        d = place(vs, key, HashRing())
        assert d.replica == IDS[3]
        assert set(d.skipped) >= {
            (IDS[0], Skip.UNHEALTHY),
            (IDS[1], Skip.DRAINING),
            (IDS[2], Skip.BREAKER_OPEN),
        }


def test_nothing_eligible_is_a_decision_too() -> None:
    vs = [ReplicaView(r, healthy=False) for r in IDS]
    d = place(vs, "k", HashRing())
    assert d == Decision(
        None, Reason.NONE_ELIGIBLE, key="k", skipped=tuple((r, Skip.UNHEALTHY) for r in IDS)
    )
    assert d.attributes()["llmgateway.placement"] == "none_eligible"


def test_a_retry_avoids_the_replicas_already_tried() -> None:
    ring = HashRing()
    first = place(views(), "episode-7", ring)
    assert first.replica is not None
    retry = place(views(), "episode-7", ring, tried=frozenset({first.replica}))
    assert retry.replica not in (None, first.replica)
    assert (first.replica, Skip.TRIED) in retry.skipped
    # Once every replica was tried, any is better than refusing.
    again = place(views(), "episode-7", ring, tried=frozenset(IDS))
    assert again.replica in IDS


def test_least_loaded_breaks_ties_on_kv_cache_usage() -> None:
    vs = views(**{IDS[0]: {"kv_usage": 0.9}, IDS[1]: {"kv_usage": 0.2}})
    vs = [v for v in vs if v.id in IDS[:2]]
    d = least_loaded(vs)
    assert d == Decision(IDS[1], Reason.LEAST_LOADED)


def test_prefix_key_is_a_digest_of_the_leading_text() -> None:
    k = prefix_key("You are memOS. " * 10)
    assert k.startswith("prefix:")
    assert "memOS" not in k
    assert prefix_key("You are memOS. " * 10) == k
    assert prefix_key("other") != k
    assert prefix_key("") == ""
    # Only the leading max_chars count: a shared long system prompt is one key.
    assert prefix_key("a" * 3000 + "x", 2048) == prefix_key("a" * 3000 + "y", 2048)


def test_decision_attributes_carry_no_prompt_text() -> None:
    d = place(views(**{IDS[0]: {"draining": True}}), prefix_key("secret prompt"), HashRing())
    attrs = d.attributes()
    assert "secret" not in str(attrs)
    assert attrs["llmgateway.placement"] in ("affinity", "affinity_spill")
    assert attrs["llmgateway.replica"] == d.replica


def test_round_robin_takes_eligible_replicas_in_turn() -> None:
    vs = views(**{IDS[1]: {"draining": True}})
    picks = [round_robin(vs, turn).replica for turn in range(6)]
    assert picks == [IDS[0], IDS[2], IDS[3]] * 2
    assert round_robin(vs, 0).reason is Reason.ROUND_ROBIN


def test_on_equal_load_a_replica_with_the_model_loaded_wins() -> None:
    """Ollama's /api/ps: a replica that must load the model first is the last resort."""
    vs = views(**{IDS[0]: {"model_loaded": False}, IDS[1]: {"model_loaded": True}})
    assert least_loaded(vs).replica == IDS[1]
    assert least_loaded([vs[0], vs[2]]).replica == IDS[2]  # unknown beats known-cold
    busy = views(**{IDS[1]: {"model_loaded": True, "in_flight": 2}})
    assert least_loaded([busy[0], busy[1]]).replica == IDS[0]  # load still comes first
