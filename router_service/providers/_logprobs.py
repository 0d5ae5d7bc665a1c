"""Log probabilities in the shape both engines share: ``[{token, logprob, top_logprobs}]``
(Ollama per chunk, vLLM in ``choices[].logprobs.content``)."""

from __future__ import annotations

from typing import Any

from router_service.values import TokenLogprob, TopLogprob


def parse_logprobs(items: list[Any]) -> list[TokenLogprob]:
    out: list[TokenLogprob] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        top = item.get("top_logprobs") or ()
        out.append(
            TokenLogprob(
                str(item.get("token", "")),
                float(item.get("logprob") or 0.0),
                tuple(
                    TopLogprob(str(t.get("token", "")), float(t.get("logprob") or 0.0))
                    for t in top
                    if isinstance(t, dict)
                ),
            )
        )
    return out
