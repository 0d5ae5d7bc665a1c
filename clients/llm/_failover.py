"""Several control-service replicas behind one client: which address to try next.

A replica that is not the leader refuses a mutation with UNAVAILABLE and ErrorInfo reason
``NOT_LEADER`` whose metadata names ``leader_address``: the client retries there at once. A
replica that does not answer (UNAVAILABLE: refused, reset; for reads also DEADLINE_EXCEEDED)
is skipped for the next address in the list. Mutations are not retried after a deadline: the
replica may have applied them (a compare-and-set ``expected_version`` makes such a retry safe,
and the caller can do it knowingly).
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

NOT_LEADER = "NOT_LEADER"
READ_METHODS = frozenset(
    {"GetState", "ListEvents", "GetHealth", "GetShadowReport", "EvaluateGoNoGo", "GetGpuStatus"}
    | {"SelectModel"}
)


def split_targets(target: str) -> list[str]:
    """``a:1,b:2`` → ``["a:1", "b:2"]`` (one address stays one)."""
    out = [t.strip() for t in target.split(",") if t.strip()]
    if not out:
        raise ValueError(f"no control address in {target!r}")
    return out


def _not_leader_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    if exc.code() is not grpc.StatusCode.UNAVAILABLE:
        return None
    status = rpc_status.from_call(exc)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.reason == NOT_LEADER:
                return info
    return None


def _not_leader(exc: grpc.aio.AioRpcError) -> bool:
    return _not_leader_info(exc) is not None


def leader_hint(exc: grpc.aio.AioRpcError) -> str:
    """The leader's address of a NOT_LEADER refusal ("" when not one, or no leader known)."""
    info = _not_leader_info(exc)
    return str(info.metadata.get("leader_address", "")) if info is not None else ""


def next_target(
    exc: grpc.aio.AioRpcError, method: str, targets: list[str], current: int
) -> int | None:
    """The index in ``targets`` to retry on (a new leader address is appended), or None."""
    hint = leader_hint(exc)
    if hint in targets and targets.index(hint) == current:
        hint = ""  # the replica names itself: its term just ended, a new one is being elected
    if not hint and _not_leader(exc):
        # Refused by a replica that knows no leader yet (an election under way): ask around.
        return (current + 1) % len(targets) if len(targets) > 1 else current
    if hint:
        if hint not in targets:
            targets.append(hint)
        index = targets.index(hint)
        return index if index != current else None
    code = exc.code()
    retry = code is grpc.StatusCode.UNAVAILABLE or (
        code is grpc.StatusCode.DEADLINE_EXCEEDED and method in READ_METHODS
    )
    if retry and len(targets) > 1:
        return (current + 1) % len(targets)
    return None
