"""The grpc.aio interceptor that applies ``control_service.authz`` to every ControlService call.

The check runs inside the wrapped handler, not in ``intercept_service``: only the servicer
context carries the TLS peer (``auth_context``), which mTLS identities come from. No usable
credential is UNAUTHENTICATED, a credential that may not make the call PERMISSION_DENIED.
Handlers ask :meth:`AuthInterceptor.principal` for the caller (the audit actor, the router id a
session may claim); it resolves the same credentials again, which is a few constant-time
compares, and keeps no per-call state.
"""

from __future__ import annotations

from typing import Any

import grpc

from control_service.authz import Credentials, Denied, Principal, bearer_token
from llmcore.handlers import Context, GuardInterceptor, Handler, guarded


def certificate_names(context: Context) -> list[str]:
    """The verified client certificate's common name, then its subject alternative names."""
    auth = context.auth_context()
    names: list[str] = []
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for raw in auth.get(key, ()):
            name = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            if name and name not in names:
                names.append(name)
    return names


class AuthInterceptor(GuardInterceptor):
    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def _resolve(self, method: str, context: Context) -> Principal | None:
        bearer = bearer_token(context.invocation_metadata())
        names = certificate_names(context) if self.credentials.mtls else []
        return self.credentials.authenticate(bearer, names, method)

    def principal(self, context: Context) -> Principal:
        """The caller of an admitted call (:data:`ANONYMOUS` in insecure mode without one)."""
        bearer = bearer_token(context.invocation_metadata())
        names = certificate_names(context) if self.credentials.mtls else []
        return self.credentials.identify(bearer, names)

    async def _check(self, method: str, context: Context) -> None:
        try:
            self._resolve(method, context)
        except Denied as denied:
            code = grpc.StatusCode.PERMISSION_DENIED
            if denied.unauthenticated:
                code = grpc.StatusCode.UNAUTHENTICATED
            await context.abort(code, str(denied))

    def guard(self, handler: Handler, method: str) -> Handler:
        async def before(request: Any, context: Context) -> Any:
            await self._check(method, context)
            return request

        return guarded(handler, before)
