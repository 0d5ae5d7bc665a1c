"""The provider protocol: what the dispatcher needs from an engine."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from llmcore.vocabulary import ProviderName
from router_service.values import ChatCall, ChatChunk, EmbedCall, EmbedOutput


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    """Per-call timeouts; the caller's deadline bounds the whole call on top of these."""

    connect_timeout_s: float = 2.0
    read_timeout_s: float = 60.0


class Provider(Protocol):
    """An inference engine. Implementations raise only ``RouterError`` (mapped at the edge)."""

    @property
    def name(self) -> ProviderName: ...

    def stream_chat(self, call: ChatCall) -> AsyncGenerator[ChatChunk, None]:
        """Stream one chat completion; the last chunk has ``done=True``.

        Closing the iterator (``aclose``) closes the HTTP stream, which makes the engine abort.
        """
        ...

    async def embed(self, call: EmbedCall) -> EmbedOutput: ...

    @property
    def base_url(self) -> str: ...

    async def probe(self) -> None:
        """Raise ``RouterError`` unless the engine's liveness endpoint answers 200."""
        ...

    async def aclose(self) -> None: ...
