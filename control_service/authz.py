"""Who may call what on the ControlService: credentials, roles and the per-method rule.

Three roles, each with its own credentials (docs/security.md):

* **router**: opens ``RouterSession`` and nothing else. A per-router credential (a token listed
  under ``routers:`` in the credentials file, or an mTLS client certificate) binds the router
  id: the hello must name that id. The fleet token (``router_token``) lets any id in, for fleets
  whose pods share one secret; the hub then keeps one live session per id.
* **operator**: every call: the verbs (each request carrying a ``ChangeMeta``), the go/no-go
  gate (it can send golden queries through a live router) and the shadow report (it may carry
  captured prompts and answers).
* **reader**: the other reads (GetState, ListEvents, GetHealth, the GPU views, SelectModel):
  dashboards and ``llmctl status`` without the power to change anything.

Every ControlService call needs a credential unless ``insecure`` is set (then a wrong token is
still refused, and a call without one runs as :data:`ANONYMOUS`). A bearer token, when present,
decides; else a verified client certificate does (its common name and DNS names).

Plain Python (no grpc): ``control_service.auth`` is the interceptor that applies it.
"""

from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from clients.gen.llmgateway.v1 import control_pb2


class Role(enum.Enum):
    ROUTER = "router"
    OPERATOR = "operator"
    READER = "reader"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``router_ids``: for a router, the ids it may claim (empty: any,
    the fleet token)."""

    role: Role
    name: str
    router_ids: frozenset[str] = frozenset()
    authenticated: bool = True

    @property
    def identity(self) -> str:
        """What the audit log records as the actor: ``operator:alice``, ``router:router-1``."""
        return f"{self.role.value}:{self.name}"

    def may_claim(self, router_id: str) -> bool:
        return self.role is Role.ROUTER and (not self.router_ids or router_id in self.router_ids)


# Insecure mode without a credential: the caller is unknown, so everything it does is recorded
# under its own (client-supplied) name.
ANONYMOUS = Principal(Role.OPERATOR, "anonymous", authenticated=False)

_SERVICE = control_pb2.DESCRIPTOR.services_by_name["ControlService"]
_PREFIX = f"/{_SERVICE.full_name}/"
SESSION_METHOD = f"{_PREFIX}RouterSession"
# Operator-only reads: the gate can run golden queries; the shadow report can hold user text.
_OPERATOR_READS = frozenset({"EvaluateGoNoGo", "GetShadowReport"})
MUTATING_METHODS: frozenset[str] = frozenset(
    f"{_PREFIX}{m.name}" for m in _SERVICE.methods if "meta" in m.input_type.fields_by_name
)
OPERATOR_METHODS: frozenset[str] = MUTATING_METHODS | {f"{_PREFIX}{n}" for n in _OPERATOR_READS}
CONTROL_METHODS: frozenset[str] = frozenset(f"{_PREFIX}{m.name}" for m in _SERVICE.methods)


def allowed_roles(method: str) -> frozenset[Role]:
    """The roles that may call ``method`` (a full gRPC method path); empty: not a
    ControlService method (health, reflection), which this module does not govern."""
    if method == SESSION_METHOD:
        return frozenset({Role.ROUTER})
    if method in OPERATOR_METHODS:
        return frozenset({Role.OPERATOR})
    if method in CONTROL_METHODS:
        return frozenset({Role.OPERATOR, Role.READER})
    return frozenset()


class Denied(Exception):
    """``unauthenticated``: no usable credential; otherwise the credential may not do this."""

    def __init__(self, message: str, *, unauthenticated: bool) -> None:
        super().__init__(message)
        self.unauthenticated = unauthenticated


# Names in credentials: what a router id or a certificate name may look like (DNS labels, pod
# names); also what keeps them safe to log.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


@dataclass(frozen=True)
class Credentials:
    """Every credential the service accepts. Tokens map to principals; certificate names listed
    in ``cert_operators`` / ``cert_readers`` are operators / readers, any other verified
    certificate is the router of that name."""

    tokens: Mapping[str, Principal] = field(default_factory=dict)
    cert_operators: frozenset[str] = frozenset()
    cert_readers: frozenset[str] = frozenset()
    mtls: bool = False
    insecure: bool = False

    @property
    def empty(self) -> bool:
        return not self.tokens and not self.mtls

    def by_token(self, presented: str) -> Principal | None:
        """Constant time per configured token (every one is compared)."""
        found: Principal | None = None
        raw = presented.encode()
        for token, principal in self.tokens.items():
            if hmac.compare_digest(raw, token.encode()):
                found = principal
        return found

    def by_certificate(self, names: Sequence[str]) -> Principal | None:
        usable = [n for n in names if NAME_RE.match(n)]
        if not self.mtls or not usable:
            return None
        for n in usable:
            if n in self.cert_operators:
                return Principal(Role.OPERATOR, n)
        for n in usable:
            if n in self.cert_readers:
                return Principal(Role.READER, n)
        return Principal(Role.ROUTER, usable[0], frozenset(usable))

    def identify(self, bearer: str | None, cert_names: Sequence[str]) -> Principal:
        """The caller's principal without a method check (:data:`ANONYMOUS` when unknown)."""
        found = self.by_token(bearer) if bearer is not None else None
        if found is None and (bearer is None or self.insecure):
            found = self.by_certificate(cert_names)
        return found if found is not None else ANONYMOUS

    def authenticate(
        self, bearer: str | None, cert_names: Sequence[str], method: str
    ) -> Principal | None:
        """The caller of ``method``, or None for a call that is not governed here. Raises
        :class:`Denied`."""
        roles = allowed_roles(method)
        if not roles:
            return None
        principal: Principal | None = None
        if bearer is not None:
            principal = self.by_token(bearer)
            if principal is None and not self.insecure:
                raise Denied("the bearer token is not valid", unauthenticated=False)
        if principal is None:
            principal = self.by_certificate(cert_names)
        if principal is None:
            if self.insecure:
                return ANONYMOUS
            raise Denied(
                "this call needs a credential: 'authorization: Bearer <token>' metadata"
                + (" or a client certificate" if self.mtls else ""),
                unauthenticated=True,
            )
        if principal.role not in roles:
            need = " or ".join(sorted(r.value for r in roles))
            raise Denied(
                f"{principal.identity} may not call {method.rsplit('/', 1)[-1]} (needs {need})",
                unauthenticated=False,
            )
        return principal


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of the first ``authorization: Bearer <token>`` header; None when absent or not
    a bearer (an empty one is absent)."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        scheme, _, presented = text.strip().partition(" ")
        if scheme.lower() == "bearer" and presented.strip():
            return presented.strip()
        return None
    return None


def _add(tokens: dict[str, Principal], token: str, principal: Principal) -> None:
    if not token:
        return
    other = tokens.get(token)
    if other is not None and other != principal:
        raise ValueError(
            f"one token is configured for both {other.identity} and {principal.identity}"
        )
    tokens[token] = principal


def load_credentials_file(path: Path) -> dict[str, Principal]:
    """Tokens from a YAML file ``{operators: {name: token}, readers: {...}, routers: {...}}``;
    a router's name is the router id its token binds."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or set(data) - {"operators", "readers", "routers"}:
        raise ValueError(f"{path}: expected a mapping with operators, readers and routers")
    tokens: dict[str, Principal] = {}
    for section, role in (("operators", Role.OPERATOR), ("readers", Role.READER)):
        for name, token in (data.get(section) or {}).items():
            _check_entry(path, section, name, token)
            _add(tokens, token, Principal(role, name))
    for name, token in (data.get("routers") or {}).items():
        _check_entry(path, "routers", name, token)
        _add(tokens, token, Principal(Role.ROUTER, name, frozenset({name})))
    return tokens


def _check_entry(path: Path, section: str, name: object, token: object) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"{path}: {section}: {name!r} is not a valid name")
    if not isinstance(token, str) or len(token) < 16:
        raise ValueError(f"{path}: {section}.{name}: a token is a string of 16 or more characters")


def build_credentials(
    *,
    operator_token: str = "",
    reader_token: str = "",
    router_token: str = "",
    credentials_file: Path | None = None,
    mtls: bool = False,
    cert_operators: Iterable[str] = (),
    cert_readers: Iterable[str] = (),
    insecure: bool = False,
) -> Credentials:
    """The settings' credentials in one object; raises ValueError on a conflicting set."""
    tokens: dict[str, Principal] = {}
    _add(tokens, operator_token, Principal(Role.OPERATOR, "operator"))
    _add(tokens, reader_token, Principal(Role.READER, "reader"))
    _add(tokens, router_token, Principal(Role.ROUTER, "fleet"))
    if credentials_file is not None:
        for token, principal in load_credentials_file(credentials_file).items():
            _add(tokens, token, principal)
    return Credentials(
        tokens, frozenset(cert_operators), frozenset(cert_readers), mtls=mtls, insecure=insecure
    )
