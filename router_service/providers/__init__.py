"""Backend providers: one implementation per engine wire protocol, behind ``Provider``."""

from router_service.providers._base import Provider, ProviderLimits
from router_service.providers._http import build_http_client
from router_service.providers.ollama import OllamaProvider
from router_service.providers.openai_compat import OpenAICompatProvider

__all__ = [
    "OllamaProvider",
    "OpenAICompatProvider",
    "Provider",
    "ProviderLimits",
    "build_http_client",
]
