"""Shadow mode: mirror a sample of requests to the shadow engine off the request path and
compare the answers (issue 5). See ``_mirror`` for the design and ``_compare`` for the figures."""

from router_service.shadow._compare import (
    TextFigures,
    compare_texts,
    cosine,
    decode_rate,
    length_ratio,
    normalise,
    text_similarity,
)
from router_service.shadow._mirror import (
    SHADOW_ID_SUFFIX,
    MirrorCounters,
    MirrorOptions,
    ShadowMirror,
    ShadowTicket,
)
from router_service.shadow._sample import sample_bucket, sampled

__all__ = [
    "SHADOW_ID_SUFFIX",
    "MirrorCounters",
    "MirrorOptions",
    "ShadowMirror",
    "ShadowTicket",
    "TextFigures",
    "compare_texts",
    "cosine",
    "decode_rate",
    "length_ratio",
    "normalise",
    "sample_bucket",
    "sampled",
    "text_similarity",
]
