"""Assembles GetStatus from what the router already holds in memory."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from clients.gen.llmgateway.v1 import router_pb2
from llmcore.vocabulary import ProviderName
from router_service.breaker import Breakers
from router_service.config.holder import ConfigHolder
from router_service.config.subscriber import ConfigSubscriber
from router_service.engine_health import EngineHealth
from router_service.providers import Provider
from router_service.requests import PROVIDER_TO_PROTO


@dataclass
class StatusView:
    router_id: str
    config: ConfigHolder
    providers: Mapping[ProviderName, Provider]
    engines: EngineHealth
    active: Callable[[], int]
    breakers: Breakers
    subscriber: ConfigSubscriber | None = None

    def snapshot(self) -> router_pb2.GetStatusResponse:
        cfg = self.config.current
        sub = self.subscriber
        now = time.monotonic()
        out = router_pb2.GetStatusResponse(
            router_id=self.router_id,
            config_version=cfg.version,
            config_state="standalone" if sub is None else sub.state.value,
            phase=cfg.phase,
            vllm_traffic_percent=cfg.vllm_percent,
            active_requests=self.active(),
            last_config_error="" if sub is None else (sub.last_nack or sub.last_error),
        )
        for name, provider in self.providers.items():
            probe = self.engines.last.get(name)
            out.engines.append(
                router_pb2.EngineStatus(
                    provider=PROVIDER_TO_PROTO[name],
                    base_url=provider.base_url,
                    healthy=probe.healthy if probe else False,
                    detail=probe.detail if probe else "not probed yet",
                    latency_ms=probe.latency_ms if probe else 0.0,
                    age_ms=(now - probe.at) * 1000 if probe else 0.0,
                    breaker_state=self.breakers.state(name).value,
                )
            )
        return out
