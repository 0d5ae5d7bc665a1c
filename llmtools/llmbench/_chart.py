"""``--chart out.png``: the latency distributions as empirical CDFs (matplotlib, imported here
only and by name, so the tool and its type checks work without it)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from llmtools.llmbench._targets import Sample


class ChartUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    """Fail before the run, not after it, when a chart was asked for and cannot be drawn."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ChartUnavailableError(
            "--chart needs matplotlib: pip install -e '.[bench]' (or pip install matplotlib)"
        )


def _ttft_ms(samples: Sequence[Sample]) -> list[float]:
    return [t * 1e3 for s in samples if (t := s.ttft_s) is not None]


def _gaps_ms(samples: Sequence[Sample]) -> list[float]:
    return [g * 1e3 for s in samples for g in s.gaps()]


def _e2e_ms(samples: Sequence[Sample]) -> list[float]:
    return [(s.t_end - s.t_start) * 1e3 for s in samples]


_PANELS: tuple[tuple[str, Callable[[Sequence[Sample]], list[float]]], ...] = (
    ("time to first token (ms)", _ttft_ms),
    ("inter-token gap (ms)", _gaps_ms),
    ("end-to-end latency (ms)", _e2e_ms),
)


def write_chart(runs: Mapping[str, Sequence[Sample]], path: Path, title: str) -> None:
    require_matplotlib()
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")  # no display needed
    plt: Any = importlib.import_module("matplotlib.pyplot")

    fig, axes = plt.subplots(1, len(_PANELS), figsize=(15, 4.5))
    for ax, (xlabel, extract) in zip(axes, _PANELS, strict=True):
        for label, samples in runs.items():
            values = sorted(extract([s for s in samples if s.ok]))
            if not values:
                continue
            ys = [(i + 1) / len(values) for i in range(len(values))]
            ax.step(values, ys, where="post", label=f"{label} (n={len(values)})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of samples <= x")
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.set_xscale("log")
            ax.legend(loc="lower right", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
