"""The comparison figures and the sample decision, on known values (plain functions)."""

from __future__ import annotations

import math

import pytest

from router_service.shadow import (
    compare_texts,
    cosine,
    decode_rate,
    length_ratio,
    normalise,
    sample_bucket,
    sampled,
    text_similarity,
)
from router_service.split import in_share


def test_normalise_drops_case_punctuation_and_extra_whitespace() -> None:
    assert normalise("  Hello,   WORLD!\n\tIt's  fine. ") == ["hello", "world", "it", "s", "fine"]
    assert normalise("") == []
    assert normalise("...!?") == []


def test_identical_answers_score_one() -> None:
    assert text_similarity("The answer is 42.", "The answer is 42.") == 1.0
    # Normalisation makes case, punctuation and whitespace differences vanish.
    assert text_similarity("Hello, world!", "hello   WORLD") == 1.0
    assert text_similarity("", "") == 1.0


def test_disjoint_answers_score_zero() -> None:
    assert text_similarity("alpha beta", "gamma delta") == 0.0
    assert text_similarity("something", "") == 0.0


def test_middle_case_by_hand() -> None:
    # A = {the: 2, cat, sat, on, mat}, B = {the, cat, sat, on, a, hat}
    # min counts: the 1 + cat + sat + on = 4; max counts: the 2 + cat + sat + on + mat + a + hat = 8
    assert text_similarity("The cat sat on the mat.", "the cat sat on a hat") == 0.5
    # Repetitions count: {a: 3, b: 1} vs {a: 1, b: 2} -> min 1 + 1 = 2, max 3 + 2 = 5.
    assert text_similarity("a a a b", "a b b") == pytest.approx(0.4)
    # Order does not matter; the measure is symmetric.
    assert text_similarity("b a", "a b") == 1.0
    assert text_similarity("x y z", "x") == text_similarity("x", "x y z") == pytest.approx(1 / 3)


def test_length_ratio_is_shadow_over_primary_characters() -> None:
    assert length_ratio("abcd", "ab") == 0.5
    assert length_ratio("ab", "abcd") == 2.0
    assert length_ratio("", "") == 1.0
    assert length_ratio("", "abc") == 3.0  # an empty primary counts as one character
    figures = compare_texts("Hello, world!", "hello world")
    assert figures.text_similarity == 1.0
    assert figures.length_ratio == pytest.approx(11 / 13)


def test_cosine_on_known_vectors() -> None:
    assert cosine([1.0, 0.0], [0.0, 1.0]) == 0.0
    assert cosine([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [-1.0, 0.0]) == -1.0
    assert cosine([3.0, 4.0], [4.0, 3.0]) == pytest.approx(24 / 25)
    assert cosine([0.0, 0.0], [1.0, 1.0]) == 0.0
    with pytest.raises(ValueError, match="dimension"):
        cosine([1.0], [1.0, 2.0])


def test_decode_rate_matches_the_router_timings_formula() -> None:
    assert decode_rate(11, 0.1, 1.1) == pytest.approx(10.0)
    assert decode_rate(1, 0.1, 1.1) == 0.0
    assert decode_rate(5, None, 1.0) == 0.0
    assert decode_rate(5, 1.0, 1.0) == 0.0


def test_sample_rate_zero_and_one() -> None:
    ids = [f"req-{i}" for i in range(10_000)]
    assert not any(sampled(i, 0.0) for i in ids)
    assert all(sampled(i, 1.0) for i in ids)


@pytest.mark.parametrize("rate", [0.01, 0.25, 0.5, 0.9])
def test_sample_share_within_two_points_over_ten_thousand_ids(rate: float) -> None:
    share = sum(sampled(f"req-{i}", rate) for i in range(10_000)) / 10_000
    assert abs(share - rate) <= 0.02


def test_sampling_is_deterministic_and_monotone() -> None:
    ids = [f"id-{i}" for i in range(2_000)]
    first = [sampled(i, 0.25) for i in ids]
    assert first == [sampled(i, 0.25) for i in ids]
    # Raising the rate only adds ids: a request in the 10 % sample is in the 25 % sample.
    assert all(sampled(i, 0.25) for i in ids if sampled(i, 0.10))
    # Pinned values: the hash must not change between versions (every router must agree).
    assert [sample_bucket(f"req-{i}") for i in range(3)] == PINNED_BUCKETS


def test_sample_is_independent_of_the_traffic_split() -> None:
    """Its own salt: a 25 % sample and a 25 % split overlap on about 6.25 % of ids, not 25 %."""
    ids = [f"req-{i}" for i in range(10_000)]
    both = sum(sampled(i, 0.25) and in_share(i, 25.0) for i in ids) / len(ids)
    assert math.isclose(both, 0.0625, abs_tol=0.015)


PINNED_BUCKETS = [3535, 1892, 5222]
