"""The errors and span events of one attempt, shared by the Generate and Embed loops."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import trace

from router_service.breaker import COUNTED, Breaker
from router_service.errors import ErrorKind, RouterError
from router_service.lifecycle.watch import Expired, StreamTimeout
from router_service.placement import Candidate


def span_event(name: str, cand: Candidate, err: RouterError, attempt: int = 0) -> None:
    """A retry, fallback or continuation, as an event on the current span (the request's
    ``chat`` span)."""
    attrs: dict[str, str | int] = {
        "gen_ai.provider.name": cand.provider,
        "gen_ai.request.model": cand.model,
        "error.type": err.kind.value,
    }
    if attempt:
        attrs["llmgateway.attempt"] = attempt
    trace.get_current_span().add_event(name, attrs)


def judge(breaker: Breaker, err: RouterError) -> None:
    if err.kind in COUNTED:
        breaker.failure()
    else:
        breaker.release()


def stream_timeout_error(t: StreamTimeout, cand: Candidate, request_id: str) -> RouterError:
    if t.which is Expired.FIRST_TOKEN:
        # Nothing was sent: another attempt, or the fallback engine, may answer.
        return RouterError(
            ErrorKind.LLM_TIMEOUT,
            f"{cand.provider} sent no first token within {t.limit_s:g}s",
            cand.provider,
            cand.model,
            request_id,
            retryable=True,
        )
    return RouterError(
        ErrorKind.LLM_TIMEOUT,
        f"{cand.provider} stalled: no new token for {t.limit_s:g}s",
        cand.provider,
        cand.model,
        request_id,
        retryable=True,
    )


@dataclass
class DeadlineExceeded(RouterError):
    """The request's deadline passed: no retry, no fallback, no continuation."""


def deadline_error(cand: Candidate, request_id: str) -> RouterError:
    return DeadlineExceeded(
        ErrorKind.LLM_TIMEOUT,
        "deadline exceeded before the engine finished",
        provider=cand.provider,
        model=cand.model,
        request_id=request_id,
    )


def truncated_error(cand: Candidate) -> RouterError:
    return RouterError(
        ErrorKind.LLM_UNAVAILABLE,
        f"{cand.provider} closed the stream before it was complete",
        cand.provider,
        cand.model,
        retryable=True,
    )


def circuit_open(cand: Candidate, request_id: str) -> RouterError:
    return RouterError(
        ErrorKind.LLM_UNAVAILABLE,
        f"{cand.provider} circuit breaker is open: recent requests failed",
        provider=cand.provider,
        model=cand.model,
        request_id=request_id,
        engine_down=True,
    )


def fill(err: RouterError, cand: Candidate, request_id: str) -> None:
    err.provider = err.provider or cand.provider
    err.model = cand.model
    err.request_id = request_id


def as_embedding_error(err: RouterError) -> RouterError:
    """Engine failures of an Embed call carry memOS's ERR_5004; the gRPC code keeps the cause."""
    if err.kind in (ErrorKind.MODEL_NOT_FOUND, ErrorKind.INVALID_REQUEST):
        return err
    err.cause = err.kind
    err.kind = ErrorKind.EMBEDDING_SERVICE_ERROR
    return err
