"""llmcore.stats.percentile: one definition (numpy's default "linear") and one scale (0..100)."""

from __future__ import annotations

import pytest

from llmcore.stats import percentile


def test_linear_interpolation_like_numpys_default() -> None:
    # Figures from numpy.percentile(values, q) (method="linear").
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([0.2, 0.4, 0.6, 0.8], 10) == pytest.approx(0.26)
    assert percentile([0.2, 0.4, 0.6, 0.8], 90) == pytest.approx(0.74)
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0


def test_any_iterable_and_single_value() -> None:
    assert percentile((x for x in [3.0]), 90) == 3.0
    assert percentile({5.0, 1.0}, 50) == 3.0


def test_no_values_is_none_not_zero() -> None:
    assert percentile([], 50) is None


@pytest.mark.parametrize("q", [-1.0, 100.5, 0.5 * 1000])
def test_q_outside_the_percent_scale_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match=r"q must be in \[0, 100\]"):
        percentile([1.0, 2.0], q)
