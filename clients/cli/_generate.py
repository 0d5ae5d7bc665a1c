"""``llmctl generate``: stream one completion to stdout."""

from __future__ import annotations

import argparse
import sys

from clients.cli._common import (
    PROVIDER_CHOICES,
    Subparsers,
    add_output_option,
    connect_router,
    print_json,
    print_note,
)
from clients.llm import GenerateResult, RouterError, Task


def register(subparsers: Subparsers) -> None:
    """Adds the ``generate`` subcommand."""
    parser = subparsers.add_parser(
        "generate",
        help="stream a completion from the router",
        description="Streams the completion to stdout as it arrives; in text mode a summary "
        "(provider, model, request id, finish reason, usage, time to first token) goes to "
        "stderr at the end.",
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
    add_output_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``generate``."""
    with connect_router(args) as client:
        stream = client.generate(
            args.prompt,
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
        )
        if args.output == "json":
            print_json(_as_json(stream.collect()))
            return 0
        try:
            for chunk in stream.text():
                sys.stdout.write(chunk)
                sys.stdout.flush()
            result = stream.collect()
        except RouterError:
            _end_line(stream.partial_text)
            raise
        _end_line(result.text)
        print_note(_summary(result))
    return 0


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
        "finish_reason": result.finish_reason.value,
        "usage": {
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "total_tokens": result.usage.total_tokens,
        },
        "timings": {
            "time_to_first_token_ms": result.timings.time_to_first_token_ms,
            "total_ms": result.timings.total_ms,
            "tokens_per_second": result.timings.tokens_per_second,
        },
    }
