"""Per-provider counters of the data path (the stats later reported to the control service)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from llmcore.vocabulary import ProviderName
from router_service.errors import ErrorKind


@dataclass
class RouterStats:
    started: Counter[ProviderName] = field(default_factory=Counter)
    succeeded: Counter[ProviderName] = field(default_factory=Counter)
    retries: Counter[ProviderName] = field(default_factory=Counter)
    fallbacks: Counter[ProviderName] = field(default_factory=Counter)
    failures: Counter[tuple[ProviderName, ErrorKind]] = field(default_factory=Counter)

    def record_start(self, provider: ProviderName, fallback: bool) -> None:
        self.started[provider] += 1
        if fallback:
            self.fallbacks[provider] += 1

    def record_success(self, provider: ProviderName) -> None:
        self.succeeded[provider] += 1

    def record_retry(self, provider: ProviderName) -> None:
        self.retries[provider] += 1

    def record_failure(self, provider: ProviderName, kind: ErrorKind) -> None:
        self.failures[(provider, kind)] += 1
