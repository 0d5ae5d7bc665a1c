"""Per-model prompt rewrites, off unless an operator lists the model (issue 5).

The seed's example: its Chain-of-Draft prefix cuts DeepSeek-R1's thinking tokens by 50-80%
(synthesizer.py), so the router can apply it for deepseek-r1 wherever the call comes from.
"""

from __future__ import annotations

from router_service.values import ChatMessage

# The seed's COD_PREFIX, verbatim, for operators to reference in a policy.
CHAIN_OF_DRAFT_PREFIX = (
    "First, briefly outline key points in 1-2 sentences.\nThen provide your complete answer."
)


def with_system_prefix(messages: tuple[ChatMessage, ...], prefix: str) -> tuple[ChatMessage, ...]:
    """``messages`` with ``prefix`` at the start of the system message (added when absent)."""
    if not prefix:
        return messages
    if messages and messages[0].role == "system":
        first = ChatMessage("system", f"{prefix}\n\n{messages[0].content}")
        return (first, *messages[1:])
    return (ChatMessage("system", prefix), *messages)
