"""``llmctl embeddings parity [--file F]``: do Ollama and vLLM give the same vectors?

The control service embeds the corpus (the file's non-empty lines, else its configured corpus)
on both engines with the embedding task's model and reports the per-text cosine and the
nearest-neighbour overlap@k. A pass is what lets ``embedding_provider`` move to vLLM; exit 0 on a
pass, 3 on a fail. Texts are never printed back, only their line numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clients.cli._common import Subparsers, non_negative_int
from clients.cli._control_common import add_parser, change_kwargs, run_control
from clients.cli._errors import EXIT_OK
from clients.cli._output import emit, format_pairs, format_table
from clients.cli._values import message_dict
from clients.gen.llmgateway.v1 import control_pb2
from clients.llm import ControlClient

EXIT_FAILED = 3  # as gonogo's NO-GO
WORST = 10


def register(subparsers: Subparsers) -> None:
    """Adds ``embeddings parity``."""
    emb = subparsers.add_parser(
        "embeddings",
        help="embedding parity between the engines (before moving Embed to vLLM)",
        description="memOS's vector index was built with Ollama's embeddings; these commands "
        "check whether vLLM's vectors of the same model match them.",
    )
    verbs = emb.add_subparsers(dest="embeddings_command", metavar="VERB", required=True)
    p = add_parser(
        verbs,
        "parity",
        help="embed a corpus on both engines: per-text cosine, nearest-neighbour overlap@k",
        description="Embeds the corpus on Ollama and on vLLM (the control service calls both) "
        "and compares: the cosine of each text's two vectors, and the share of each text's k "
        "nearest neighbours both spaces agree on. Exit 0 when it passes the service's "
        "thresholds, 3 when not. Audited; a pass lets embedding_provider move to vLLM.",
        mutating=True,
    )
    p.add_argument("--file", type=Path, help="corpus: one text per line (default: the service's)")
    p.add_argument("--k", type=non_negative_int, default=0, help="neighbours (default 5)")
    p.add_argument(
        "--sample", type=non_negative_int, default=0, help="at most N texts, evenly spaced"
    )
    p.set_defaults(handler=run_parity)


def parity_lines(r: control_pb2.MeasureEmbeddingParityResponse) -> list[str]:
    verdict = "PASSED" if r.passed else f"FAILED ({r.detail})"
    lines = [
        f"embedding parity: {verdict}",
        "",
        *format_pairs(
            [
                ("model", f"{r.model} (ollama {r.ollama_model}, vllm {r.vllm_model})"),
                ("texts", str(len(r.texts))),
                (
                    "cosine",
                    f"mean {r.cosine_mean:.3f}, p10 {r.cosine_p10:.3f} "
                    f"(pass: p10 >= {r.min_cosine_p10:g})",
                ),
                (f"overlap@{r.k}", f"{r.overlap_at_k:.2f} (pass: >= {r.min_overlap:g})"),
            ]
        ),
    ]
    worst = sorted(r.texts, key=lambda t: (t.cosine, t.overlap))[:WORST]
    if worst:
        rows = [[str(t.index + 1), f"{t.cosine:.3f}", f"{t.overlap:.2f}"] for t in worst]
        lines += [
            "",
            f"worst {len(rows)} text(s):",
            *format_table(["LINE", "COSINE", "OVERLAP"], rows),
        ]
    return lines


def run_parity(args: argparse.Namespace) -> int:
    """Runs ``embeddings parity``."""
    texts: list[str] = []
    if args.file is not None:
        texts = [line for line in args.file.read_text().splitlines() if line.strip()]

    async def body(client: ControlClient) -> int:
        r = await client.measure_embedding_parity(
            texts, k=args.k, sample=args.sample, **change_kwargs(args)
        )
        emit(args, message_dict(r), parity_lines(r))
        return EXIT_OK if r.passed else EXIT_FAILED

    return run_control(args, body)
