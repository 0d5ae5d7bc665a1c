"""``llmctl embed``: print the embedding of each text."""

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


def register(subparsers: Subparsers) -> None:
    """Adds the ``embed`` subcommand."""
    parser = subparsers.add_parser(
        "embed",
        help="embed one or more texts",
        description="Prints one vector per text (a JSON array per line in text mode, with a "
        "summary on stderr).",
    )
    parser.add_argument("texts", nargs="+", metavar="text", help="text to embed")
    parser.add_argument("--model", help="logical embedding model, e.g. mxbai-embed-large")
    parser.add_argument("--provider", choices=PROVIDER_CHOICES, help="pin the engine")
    parser.add_argument("--request-id", help="request id (default: generated)")
    add_output_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``embed``."""
    with connect_router(args) as client:
        result = client.embed(
            args.texts, model=args.model, provider=args.provider, request_id=args.request_id
        )
    if args.output == "json":
        print_json(
            {
                "request_id": result.request_id,
                "provider": result.provider.value,
                "model": result.model,
                "embeddings": result.embeddings,
                "prompt_tokens": result.prompt_tokens,
                "fallback": result.fallback,
            }
        )
        return 0
    for vector in result.embeddings:
        sys.stdout.write(json.dumps(vector) + "\n")
    sys.stdout.flush()
    dimensions = len(result.embeddings[0]) if result.embeddings else 0
    print_note(
        f"provider={result.provider.value} model={result.model} "
        f"request_id={result.request_id} vectors={len(result.embeddings)} "
        f"dim={dimensions} prompt_tokens={result.prompt_tokens}"
        + (" fallback" if result.fallback else "")
    )
    return 0
