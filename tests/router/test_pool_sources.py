"""Replica sources: the static lists in settings, and DNS (a Kubernetes headless service)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from clients.gen.llmgateway.v1 import common_pb2
from router_service.breaker import BreakerPolicy
from router_service.pools import DnsSource, EnginePool
from router_service.pools.sources import loop_resolver
from router_service.providers import OpenAICompatProvider, Provider, build_http_client
from router_service.providers._base import ProviderLimits
from tests.router.conftest import make_settings
from tests.router.fault_engine import ANSWER
from tests.router.pool_stack import start_pool_stack


def pool() -> EnginePool:
    def make(url: str) -> tuple[Provider, None]:
        return OpenAICompatProvider(build_http_client(url, ProviderLimits(), 4)), None

    return EnginePool("vllm", make, BreakerPolicy())


def test_static_lists_replace_the_single_url_and_dns_replaces_the_default() -> None:
    s = make_settings(vllm_base_urls=" http://a:8000/, http://b:8000,http://a:8000")
    assert s.replica_urls("vllm") == ["http://a:8000", "http://b:8000"]
    assert s.replica_urls("ollama") == ["http://127.0.0.1:11434"]  # the single URL still works
    assert make_settings(vllm_dns_url="http://vllm:8000").replica_urls("vllm") == []
    with pytest.raises(ValidationError, match="vllm_base_urls"):
        make_settings(vllm_base_urls="http://a:8000,ftp://b")
    with pytest.raises(ValidationError, match="ollama_dns_url"):
        make_settings(ollama_dns_url="ollama:11434")


def test_the_environment_names_operators_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_BASE_URLS", "http://v1:8000,http://v2:8000")
    monkeypatch.setenv("OLLAMA_BASE_URLS", "http://o1:11434")
    s = make_settings()
    assert s.replica_urls("vllm") == ["http://v1:8000", "http://v2:8000"]
    assert s.replica_urls("ollama") == ["http://o1:11434"]


async def test_dns_answers_become_the_replicas_and_a_bad_answer_keeps_them() -> None:
    answers: dict[str, list[str] | OSError] = {"vllm-headless": ["10.0.0.2", "10.0.0.1"]}
    asked: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        a = answers[host]
        if isinstance(a, OSError):
            raise a
        return a

    p = pool()
    p.add("http://static:8000")
    dns = DnsSource(p, "http://vllm-headless:8000", resolver=resolver)
    assert await dns.refresh() == ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]
    assert asked == [("vllm-headless", 8000)]
    assert {r.id: r.source for r in p.replicas.values()} == {
        "http://static:8000": "static",
        "http://10.0.0.1:8000": "dns",
        "http://10.0.0.2:8000": "dns",
    }
    # A pod went away, another came: only the dns replicas change.
    answers["vllm-headless"] = ["10.0.0.2", "10.0.0.3", "fd00::7"]
    await dns.refresh()
    assert sorted(p.replicas) == [
        "http://10.0.0.2:8000",
        "http://10.0.0.3:8000",
        "http://[fd00::7]:8000",
        "http://static:8000",
    ]
    # Resolution failed, or nothing answered: the serving replicas stay.
    answers["vllm-headless"] = OSError("Temporary failure in name resolution")
    assert len(await dns.refresh()) == 3
    assert "name resolution" in dns.last_error
    answers["vllm-headless"] = []
    await dns.refresh()
    assert len(p.replicas) == 4
    assert dns.last_error == "empty answer"
    await p.aclose()


async def test_the_loop_resolver_resolves_localhost() -> None:
    assert "127.0.0.1" in await loop_resolver("localhost", 80)


def test_a_dns_url_needs_a_host() -> None:
    with pytest.raises(ValueError, match="NAME:PORT"):
        DnsSource(pool(), "vllm-headless:8000")


async def test_a_router_finds_its_replicas_through_dns() -> None:
    """``localhost`` stands in for the headless service: the router resolves it with the
    event loop's resolver before it serves, and answers from the replica it found."""
    stack = await start_pool_stack(1, via_dns=True)
    try:
        url = f"http://127.0.0.1:{stack.replicas[0].port}"
        assert url in stack.pool.replicas
        assert all(r.source == "dns" for r in stack.pool.replicas.values())
        out = await stack.generate("k")
        assert out.text == "".join(ANSWER)
        assert out.start.provider == common_pb2.PROVIDER_VLLM
        assert len(stack.replicas[0].bodies) == 1
    finally:
        await stack.close()
