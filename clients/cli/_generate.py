"""``llmctl generate``: stream one completion to stdout."""

from __future__ import annotations

import argparse
import json
import sys

from clients.cli._common import (
    PROVIDER_CHOICES,
    Subparsers,
    add_output_option,
    connect_router,
    print_json,
    print_note,
)
from clients.cli._generate_args import add_feature_options
from clients.llm import (
    GenerateResult,
    Message,
    ReasoningChunk,
    ResponseFormat,
    Role,
    RouterError,
    Task,
    TextChunk,
)


def register(subparsers: Subparsers) -> None:
    """Adds the ``generate`` subcommand."""
    parser = subparsers.add_parser(
        "generate",
        help="stream a completion from the router",
        description="Streams the completion to stdout as it arrives; in text mode a summary "
        "(provider, model, request id, finish reason, usage, time to first token) goes to "
        "stderr at the end. Reasoning goes to stderr as it arrives (dimmed on a terminal), "
        "tool calls to stderr at the end; -o json has them as fields.",
    )
    parser.add_argument("prompt", help="the user prompt")
    parser.add_argument("--task", choices=[t.value for t in Task], help="memOS call site")
    parser.add_argument("--model", help="logical model name, e.g. qwen3:8b")
    parser.add_argument("--provider", choices=PROVIDER_CHOICES, help="pin the engine")
    parser.add_argument("--system", help="system instruction")
    parser.add_argument("--max-tokens", type=int, help="completion length cap")
    parser.add_argument("--temperature", type=float, help="sampling temperature")
    parser.add_argument("--top-p", type=float, help="nucleus sampling")
    parser.add_argument("--stop", action="append", default=[], help="stop sequence (repeatable)")
    parser.add_argument("--seed", type=int, help="sampling seed")
    parser.add_argument("--request-id", help="request id (default: generated)")
    add_feature_options(parser)
    add_output_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``generate``."""
    if args.call_timeout is not None:
        args.timeout = args.call_timeout
    fmt = args.json_schema or (ResponseFormat.json_object() if args.json else None)
    with connect_router(args) as client:
        stream = client.generate(
            None if args.image else args.prompt,  # with images the prompt is a message
            task=args.task,
            model=args.model,
            provider=args.provider,
            system=args.system,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            stop=args.stop,
            seed=args.seed,
            request_id=args.request_id,
            reasoning=args.think,
            reasoning_budget=args.think_budget,
            response_format=fmt,
            tools=args.tool,
            engine_options=dict(args.option),
            messages=[Message(Role.USER, args.prompt, images=args.image)] if args.image else None,
        )
        if args.output == "json":
            print_json(_as_json(stream.collect()))
            return 0
        thinking = _Thinking()
        try:
            for event in stream:
                if isinstance(event, TextChunk):
                    thinking.close()
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                elif isinstance(event, ReasoningChunk):
                    thinking.write(event.text)
            thinking.close()
            result = stream.collect()
        except RouterError:
            thinking.close()
            _end_line(stream.partial_text)
            raise
        _end_line(result.text)
        for call in result.tool_calls:
            print_note(f"tool_call {call.name}({call.arguments}) id={call.id}")
        print_note(_summary(result))
    return 0


class _Thinking:
    """Reasoning on stderr, apart from the answer on stdout; dimmed on a terminal."""

    def __init__(self) -> None:
        self._open = False
        self._tty = sys.stderr.isatty()

    def write(self, text: str) -> None:
        if not self._open:
            self._open = True
            if self._tty:
                sys.stderr.write("\x1b[2m")
        sys.stderr.write(text)
        sys.stderr.flush()

    def close(self) -> None:
        if self._open:
            self._open = False
            sys.stderr.write("\x1b[0m\n" if self._tty else "\n")
            sys.stderr.flush()


def _end_line(text: str) -> None:
    # Keeps the shell prompt (or the error line) off the end of the streamed text.
    if text and not text.endswith("\n"):
        sys.stdout.write("\n")
        sys.stdout.flush()


def _summary(result: GenerateResult) -> str:
    usage, timings = result.usage, result.timings
    parts = [
        f"provider={result.provider.value}",
        f"model={result.model}",
        f"engine_model={result.engine_model}",
        f"request_id={result.request_id}",
        f"finish={result.finish_reason.value}",
        *([f"raw_finish={result.raw_finish_reason}"] if result.raw_finish_reason else []),
        *([f"stop={result.stop_sequence!r}"] if result.stop_sequence else []),
        *([f"reasoning_tokens={result.usage.reasoning_tokens}"] if result.reasoning else []),
        f"tokens={usage.prompt_tokens}+{usage.completion_tokens}={usage.total_tokens}",
        f"ttft={timings.time_to_first_token_ms:.1f}ms",
        f"total={timings.total_ms:.1f}ms",
        f"rate={timings.tokens_per_second:.1f}tok/s",
    ]
    if result.fallback:
        parts.append("fallback")
    return " ".join(parts)


def _as_json(result: GenerateResult) -> dict[str, object]:
    return {
        "request_id": result.request_id,
        "provider": result.provider.value,
        "model": result.model,
        "engine_model": result.engine_model,
        "fallback": result.fallback,
        "text": result.text,
        "reasoning": result.reasoning,
        "tool_calls": [
            {"id": c.id, "name": c.name, "arguments": _args(c.arguments)} for c in result.tool_calls
        ],
        "finish_reason": result.finish_reason.value,
        "raw_finish_reason": result.raw_finish_reason,
        "stop_sequence": result.stop_sequence,
        "usage": {
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "total_tokens": result.usage.total_tokens,
            "reasoning_tokens": result.usage.reasoning_tokens,
        },
        "timings": {
            "time_to_first_token_ms": result.timings.time_to_first_token_ms,
            "total_ms": result.timings.total_ms,
            "tokens_per_second": result.timings.tokens_per_second,
            "time_to_first_reasoning_ms": result.timings.time_to_first_reasoning_ms,
            "time_to_first_answer_ms": result.timings.time_to_first_answer_ms,
        },
    }


def _args(text: str) -> object:
    """The arguments as JSON when they parse (they may not, e.g. cut by max_tokens)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
