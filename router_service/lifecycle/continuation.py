"""Continuation failover: when an engine fails or stalls after text was streamed, the answer
goes on from that text on another engine (the messages plus the partial answer as a final
assistant message the engine continues: vLLM ``continue_final_message``, Ollama a trailing
assistant message), so the client's stream has no repeat and no gap.

Only a plain-text answer can be continued: text under a response schema or a streamed tool call
cannot be resumed by another engine safely. :func:`allowed` is the one check; features that make
an answer non-plain (schemas, tools: issue 15) plug in through ``plain_text`` and
``tool_call_streamed``.
"""

from __future__ import annotations

from router_service.values import ChatMessage


def allowed(enabled: bool, plain_text: bool, tool_call_streamed: bool, text_sent: str) -> bool:
    """Whether a stream that failed after sending ``text_sent`` may continue elsewhere."""
    return enabled and plain_text and not tool_call_streamed and bool(text_sent)


def messages_for(messages: tuple[ChatMessage, ...], text_sent: str) -> tuple[ChatMessage, ...]:
    """The conversation the continuing engine gets: the partial answer as the final assistant
    message, which it continues rather than answers."""
    return (*messages, ChatMessage("assistant", text_sent))
