"""The supervisor's backoff as plain data: grows in a crash loop, resets once a child ran."""

from __future__ import annotations

from llmtools.restart_policy import RestartPolicy, RestartState


def test_a_crash_loop_backs_off_exponentially_up_to_the_cap() -> None:
    policy = RestartPolicy(initial_s=0.5, factor=2.0, max_s=4.0, stable_s=30.0)
    state = RestartState()
    delays = [state.exited(policy, ran_for_s=0.1) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert state.restarts == 6


def test_a_child_that_ran_long_enough_restarts_at_once_again() -> None:
    policy = RestartPolicy(initial_s=0.5, factor=2.0, max_s=30.0, stable_s=10.0)
    state = RestartState()
    for _ in range(4):
        state.exited(policy, ran_for_s=1.0)
    assert state.exited(policy, ran_for_s=1.0) == 8.0
    assert state.exited(policy, ran_for_s=10.0) == 0.5  # it was up 10 s: healthy again
    assert state.exited(policy, ran_for_s=0.2) == 1.0
    assert state.restarts == 7
