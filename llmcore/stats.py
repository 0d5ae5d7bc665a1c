"""The one percentile every report in the repository uses (shadow report, benchmarks, llm-bench,
the drill), so that a p99 here means the same as a p99 there.

Definition: linear interpolation between the closest ranks, numpy's default
(``numpy.percentile(values, q)``, method "linear", Hyndman & Fan type 7): the value at position
``(n - 1) * q / 100`` of the sorted values. Scale: ``q`` is a percentage, 0..100. It was chosen
over nearest-rank because it moves smoothly with the data on the small samples tests and short
benchmark rounds have, and because it is what numpy, pandas and spreadsheet tools report, so a
figure from here can be checked against them.

Histogram quantiles (``control_service.stats_windows.Histogram.quantile``) are a different thing
(an estimate from bucket counts, Prometheus's ``histogram_quantile``) and stay there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (``q`` in 0..100) of ``values``; None when there are none.

    >>> percentile([4.0, 1.0, 3.0, 2.0], 50)
    2.5
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile: q must be in [0, 100], got {q}")
    xs = sorted(values)
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
