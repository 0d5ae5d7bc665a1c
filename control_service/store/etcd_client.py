"""A small typed facade over ``aetcd`` (etcd v3 over grpc.aio): exactly the calls the etcd store
and the leader election use, with etcd's failures turned into :class:`StoreError`.

Why aetcd: it is the maintained asyncio client (1.0.0, 2026), runs on grpc.aio like the rest of
the service, and its bundled generated code imports and works on protobuf 7 / grpcio 1.85 (the
versions this project pins; checked against a real etcd cluster by the store contract suite).
Ranges with a limit and transactions are built from etcd's own request messages (``aetcd.rpc``)
and sent on aetcd's stubs, because aetcd's helpers do not expose ``limit``.

Several endpoints: one gRPC channel over all of them (``ipv4:a:p,b:p,...`` with round-robin
balancing), so a lost member costs one failed call, retried on a live member, and no
reconnect logic of our own. A single host name is resolved by gRPC's DNS resolver (a headless
Kubernetes service names every member).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aetcd
import grpc
from aetcd import rpc

from control_service.errors import StoreError

CALL_TIMEOUT_S = 5.0
# Transient failures (a member lost, a leader election inside etcd) are retried this long.
RETRY_FOR_S = 6.0


@dataclass(frozen=True, slots=True)
class KV:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True, slots=True)
class Compare:
    """One transaction guard: ``target`` of ``key`` equals ``value`` (``mod``: mod_revision,
    ``create``: create_revision, 0 meaning absent; ``value``: the bytes)."""

    key: bytes
    target: str
    value: int | bytes


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: str  # "put" or "delete"
    kv: KV


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def grpc_target(endpoints: Sequence[str]) -> str:
    """One gRPC target naming every endpoint (see the module docstring)."""
    hosts = [e.rpartition(":") for e in endpoints]
    if len(endpoints) == 1 and not _is_ip(hosts[0][0]):
        return f"dns:///{endpoints[0]}"
    addrs = []
    for host, _, port in hosts:
        if _is_ip(host):
            addrs.append(f"{host}:{port}")
        else:  # several names: resolved now, re-resolved on the next connect
            for info in socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_STREAM):
                addrs.append(f"{info[4][0]}:{port}")
    return "ipv4:" + ",".join(dict.fromkeys(addrs))


def _kv(msg: Any) -> KV:
    return KV(msg.key, msg.value, msg.create_revision, msg.mod_revision, msg.lease)


def _retryable(method: str, exc: grpc.aio.AioRpcError) -> bool:
    """UNAVAILABLE (no member took the call) is retried for every call; a timeout only for
    reads: a timed-out write may have been applied, and its retry would then fail its own
    compare (the caller sees a conflict for a write that landed: never a lost one)."""
    if exc.code() is grpc.StatusCode.UNAVAILABLE:
        return True
    return exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED and method == "Range"


class EtcdClient:
    def __init__(self, endpoints: Sequence[str], call_timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.endpoints = list(endpoints)
        target = grpc_target(self.endpoints)
        # aetcd builds its channel target as f"{host}:{port}"; split ours at the last colon.
        host, _, port = target.rpartition(":")
        self._timeout = call_timeout_s
        self._client = aetcd.Client(
            host=host,
            port=int(port),
            timeout=int(max(1, call_timeout_s)),
            options={"grpc.lb_policy_name": "round_robin", "grpc.enable_retries": 1},
        )

    async def connect(self) -> None:
        await self._client.connect()

    async def close(self) -> None:
        await self._client.close()

    async def _call(self, method: str, request: Any) -> Any:
        """One unary call with retries on transient failures for up to ``RETRY_FOR_S``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_FOR_S
        delay = 0.05
        while True:
            await self._client.connect()
            stub = self._client.leasestub if method.startswith("Lease") else self._client.kvstub
            try:
                return await getattr(stub, method)(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                if not _retryable(method, exc) or loop.time() + delay > deadline:
                    detail = f"{exc.code().name}: {exc.details()}"
                    raise StoreError(f"etcd {method} failed: {detail}") from exc
            await asyncio.sleep(delay)
            delay = min(0.5, delay * 2)

    # --- reads -----------------------------------------------------------------------------

    async def get(self, key: bytes) -> KV | None:
        resp = await self._call("Range", rpc.RangeRequest(key=key))
        return _kv(resp.kvs[0]) if resp.kvs else None

    async def range(
        self, start: bytes, end: bytes, *, limit: int = 0, descending: bool = False
    ) -> list[KV]:
        """Keys in ``[start, end)`` by key order (descending when asked), at most ``limit``."""
        req = rpc.RangeRequest(
            key=start,
            range_end=end,
            limit=limit,
            sort_target=rpc.RangeRequest.KEY,
            sort_order=rpc.RangeRequest.DESCEND if descending else rpc.RangeRequest.ASCEND,
        )
        resp = await self._call("Range", req)
        return [_kv(kv) for kv in resp.kvs]

    async def range_at(self, start: bytes, end: bytes) -> tuple[int, list[KV]]:
        """Every key in ``[start, end)`` and the revision they were read at (a watch from
        that revision + 1 misses nothing and repeats nothing)."""
        resp = await self._call("Range", rpc.RangeRequest(key=start, range_end=end))
        return int(resp.header.revision), [_kv(kv) for kv in resp.kvs]

    async def read(self, keys: Sequence[bytes]) -> tuple[int, list[KV | None]]:
        """Several keys read at one revision (an empty-guard transaction); and that revision."""
        ops = [rpc.RequestOp(request_range=rpc.RangeRequest(key=k)) for k in keys]
        resp = await self._call("Txn", rpc.TxnRequest(success=ops))
        out: list[KV | None] = []
        for r in resp.responses:
            kvs = r.response_range.kvs
            out.append(_kv(kvs[0]) if kvs else None)
        return resp.header.revision, out

    # --- writes ----------------------------------------------------------------------------

    async def txn(
        self, compares: Sequence[Compare], puts: Sequence[Put], on_failure: Sequence[bytes] = ()
    ) -> tuple[bool, int, list[KV | None]]:
        """All ``puts`` iff every compare holds; else read the ``on_failure`` keys. Returns
        (succeeded, revision, the failure reads)."""
        cmp = []
        for c in compares:
            msg = rpc.Compare(key=c.key, result=rpc.Compare.EQUAL)
            if c.target == "mod":
                msg.target, msg.mod_revision = rpc.Compare.MOD, int(c.value)
            elif c.target == "create":
                msg.target, msg.create_revision = rpc.Compare.CREATE, int(c.value)
            elif c.target == "value":
                assert isinstance(c.value, bytes)
                msg.target, msg.value = rpc.Compare.VALUE, c.value
            else:
                raise ValueError(f"unknown compare target {c.target!r}")
            cmp.append(msg)
        success = [
            rpc.RequestOp(request_put=rpc.PutRequest(key=p.key, value=p.value, lease=p.lease))
            for p in puts
        ]
        failure = [rpc.RequestOp(request_range=rpc.RangeRequest(key=k)) for k in on_failure]
        resp = await self._call(
            "Txn", rpc.TxnRequest(compare=cmp, success=success, failure=failure)
        )
        reads: list[KV | None] = []
        if not resp.succeeded:
            for r in resp.responses:
                kvs = r.response_range.kvs
                reads.append(_kv(kvs[0]) if kvs else None)
        return bool(resp.succeeded), int(resp.header.revision), reads

    async def delete(self, key: bytes) -> None:
        await self._call("DeleteRange", rpc.DeleteRangeRequest(key=key))

    # --- leases ----------------------------------------------------------------------------

    async def grant(self, ttl_s: int) -> int:
        resp = await self._call("LeaseGrant", rpc.LeaseGrantRequest(TTL=ttl_s))
        return int(resp.ID)

    async def keepalive(self, lease: int) -> int:
        """One keep-alive; the remaining TTL in seconds (0: the lease is gone)."""
        try:
            reply = await asyncio.wait_for(self._client.refresh_lease(lease), self._timeout)
        except (aetcd.ClientError, grpc.aio.AioRpcError, TimeoutError) as exc:
            raise StoreError(f"etcd lease keep-alive failed: {exc}") from exc
        return int(reply.TTL) if reply is not None else 0

    async def revoke(self, lease: int) -> None:
        await self._call("LeaseRevoke", rpc.LeaseRevokeRequest(ID=lease))

    # --- watches ---------------------------------------------------------------------------

    async def watch(
        self, key: bytes, *, prefix: bool = False, start_revision: int = 0
    ) -> AsyncIterator[WatchEvent]:
        """Events on ``key`` (or every key under it) from ``start_revision``, in revision order.
        Raises :class:`StoreError` when the stream breaks (the caller re-watches)."""
        try:
            await self._client.connect()
            if prefix:
                watch = await self._client.watch_prefix(key, start_revision=start_revision or None)
            else:
                watch = await self._client.watch(key, start_revision=start_revision or None)
        except aetcd.ClientError as exc:
            raise StoreError(f"etcd watch failed: {exc}") from exc
        try:
            async for ev in watch:
                kind = "put" if ev.kind == aetcd.EventKind.PUT else "delete"
                kv = ev.kv
                yield WatchEvent(
                    kind, KV(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.lease)
                )
        except (aetcd.ClientError, grpc.aio.AioRpcError) as exc:
            raise StoreError(f"etcd watch ended: {exc}") from exc
        finally:
            # Best effort: the stream may already be gone with the member that served it.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(watch.cancel()), 1.0)


def prefix_end(prefix: bytes) -> bytes:
    """The range end covering every key that starts with ``prefix``."""
    return aetcd.utils.prefix_range_end(prefix)  # type: ignore[no-any-return]
