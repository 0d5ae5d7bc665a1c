"""Size limits of the router's requests and of what engines send back (issue 21).

Every limit is checked before any work on the request: the gRPC receive limit (derived from the
prompt limit, so a 32 MB message is refused by grpc before it is parsed), then counts and
lengths of the fields that the prompt limit does not cover (message count, stop strings,
routing key, model name). The proto comments of ``GenerateRequest`` / ``EmbedRequest`` name the
same numbers.

Engine side: an embedding must have one vector per input, all of one length, the length the
catalogue gives for the model (``llmcore.catalog.DEFAULT_EMBEDDING_DIMENSIONS``) or at most
:data:`MAX_EMBEDDING_DIMENSIONS`, and finite values; anything else is LLM_INVALID_RESPONSE,
never relayed and recorded as a success.

Plain Python over the generated messages; no grpc.
"""

from __future__ import annotations

import math

from clients.gen.llmgateway.v1 import router_pb2
from llmcore.catalog import DEFAULT_EMBEDDING_DIMENSIONS
from router_service.errors import ErrorKind, FieldViolation, RouterError
from router_service.values import EmbedOutput

MAX_MESSAGES = 1024
MAX_STOP_SEQUENCES = 16
MAX_STOP_CHARS = 1024  # per stop string
MAX_ROUTING_KEY_CHARS = 256
MAX_MODEL_CHARS = 256
MAX_EMBEDDING_DIMENSIONS = 16_384
# Room in a message beyond the text the prompt limit counts: field tags, options, ids.
_ENVELOPE_BYTES = 256 * 1024


def max_receive_bytes(max_prompt_chars: int, max_stop_sequences: int) -> int:
    """The gRPC receive limit a request can need: the prompt at 4 bytes a character (UTF-8's
    worst), the stop strings, the message count's framing, the routing key and model name, and
    an envelope. 200 k characters: about 1.4 MB, not the 32 MB grpc was allowed before."""
    return (
        4 * max_prompt_chars
        + 4 * MAX_STOP_CHARS * max_stop_sequences
        + 16 * MAX_MESSAGES
        + 4 * (MAX_ROUTING_KEY_CHARS + MAX_MODEL_CHARS)
        + _ENVELOPE_BYTES
    )


def _common(model: str, routing_key: str, bad: list[FieldViolation]) -> None:
    if len(model) > MAX_MODEL_CHARS:
        bad.append(FieldViolation("model", f"at most {MAX_MODEL_CHARS} characters"))
    if len(routing_key) > MAX_ROUTING_KEY_CHARS:
        bad.append(FieldViolation("routing_key", f"at most {MAX_ROUTING_KEY_CHARS} characters"))


def generate_size_violations(req: router_pb2.GenerateRequest) -> list[FieldViolation]:
    """What is too big in ``req``, checked before the per-message validation runs."""
    bad: list[FieldViolation] = []
    _common(req.model, req.routing_key, bad)
    if len(req.messages) > MAX_MESSAGES:
        bad.append(FieldViolation("messages", f"at most {MAX_MESSAGES} messages"))
    for i, stop in enumerate(req.options.stop[:64]):
        if len(stop) > MAX_STOP_CHARS:
            bad.append(FieldViolation(f"options.stop[{i}]", f"at most {MAX_STOP_CHARS} characters"))
    return bad


def embed_size_violations(req: router_pb2.EmbedRequest, max_inputs: int) -> list[FieldViolation]:
    bad: list[FieldViolation] = []
    _common(req.model, req.routing_key, bad)
    if len(req.inputs) > max_inputs:
        bad.append(FieldViolation("inputs", f"{len(req.inputs)} inputs; the limit is {max_inputs}"))
    return bad


def check_embedding(
    out: EmbedOutput,
    model: str,
    inputs: int,
    provider: str,
    engine_model: str,
    dimensions: int | None = None,
) -> EmbedOutput:
    """``out`` when it is a sane answer for ``inputs`` texts of logical ``model`` (shortened to
    ``dimensions`` when the request asked for that); raises LLM_INVALID_RESPONSE otherwise."""
    expected = dimensions or DEFAULT_EMBEDDING_DIMENSIONS.get(model)
    problem = ""
    lengths = {len(v) for v in out.vectors}
    if len(out.vectors) != inputs:
        problem = f"{len(out.vectors)} vectors for {inputs} inputs"
    elif len(lengths) > 1:
        problem = "vectors of different lengths"
    elif lengths:
        (dims,) = lengths
        if expected is not None and dims != expected:
            problem = f"{dims} dimensions; the catalogue says {model} has {expected}"
        elif not 0 < dims <= MAX_EMBEDDING_DIMENSIONS:
            problem = f"{dims} dimensions; at most {MAX_EMBEDDING_DIMENSIONS}"
        elif not all(math.isfinite(x) for v in out.vectors for x in v):
            problem = "values that are not finite"
    if problem:
        raise RouterError(
            ErrorKind.LLM_INVALID_RESPONSE,
            f"{provider} sent an unusable embedding: {problem}",
            provider,
            engine_model,
        )
    return out
