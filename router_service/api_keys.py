"""Optional API keys for memOS on the router (issue 21).

Off by default: the router's port is meant to be reachable by memOS only (docs/security.md).
With keys configured (``api_keys``: client name → key, or ``api_keys_file``, YAML of the same)
every RouterService call needs ``authorization: Bearer <key>``: none is UNAUTHENTICATED, an
unknown key PERMISSION_DENIED. The key's client name goes on the call's span
(``llmgateway.client``) and counts in ``llm_router_client_requests_total{client, method}``, so
traces and metrics say which memOS instance called. The gRPC health service stays open (probes
carry no key). Keys are compared in constant time, every configured key each call.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import yaml
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter

from llmcore.handlers import Context, GuardInterceptor, Handler, guarded

_PREFIX = "/llmgateway.v1.RouterService/"


def load_api_keys(inline: Mapping[str, str], path: Path | None) -> dict[str, str]:
    """key → client name, from the settings' mapping and file; ValueError on a bad entry."""
    entries = dict(inline)
    if path is not None:
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of client name to key")
        entries.update(data)
    keys: dict[str, str] = {}
    for name, key in entries.items():
        if not isinstance(name, str) or not name or not isinstance(key, str) or len(key) < 16:
            raise ValueError(f"api key of {name!r}: a name and a key of 16 or more characters")
        if key in keys:
            raise ValueError(f"api keys of {keys[key]!r} and {name!r} are the same")
        keys[key] = name
    return keys


class ApiKeyInterceptor(GuardInterceptor):
    def __init__(self, keys: Mapping[str, str], registry: CollectorRegistry | None = None) -> None:
        self._keys = dict(keys)
        self.requests = Counter(
            "llm_router_client_requests",
            "RouterService calls per memOS client (API key name)",
            ["client", "method"],
            registry=registry,
        )

    def client(self, metadata: Any) -> str | None:
        presented = ""
        for key, value in metadata or ():
            if key.lower() == "authorization":
                text = value.decode(errors="replace") if isinstance(value, bytes) else value
                scheme, _, token = text.strip().partition(" ")
                presented = token.strip() if scheme.lower() == "bearer" else ""
                break
        if not presented:
            return None
        found = ""
        for key, name in self._keys.items():
            if hmac.compare_digest(presented.encode(), key.encode()):
                found = name
        return found

    def guard(self, handler: Handler, method: str) -> Handler:
        if not method.startswith(_PREFIX):
            return handler
        short = method.removeprefix(_PREFIX)

        async def before(request: Any, context: Context) -> Any:
            name = self.client(context.invocation_metadata())
            if name is None:
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "this router needs an API key: 'authorization: Bearer <key>' metadata",
                )
            if not name:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the API key is not valid")
            trace.get_current_span().set_attribute("llmgateway.client", str(name))
            self.requests.labels(str(name), short).inc()
            return request

        return guarded(handler, before)
