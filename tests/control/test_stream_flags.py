"""The stream-timeout and continuation flags survive the store and the proto both ways."""

from __future__ import annotations

from dataclasses import replace

from control_service import state as st
from control_service.convert import flags_from_proto, flags_to_proto
from control_service.state import StreamTimeoutOverride, default_state
from control_service.validation import validate_flags


def _state() -> st.DesiredState:
    s = default_state()
    flags = replace(
        s.flags,
        continuation_disabled=True,
        stream_timeouts=(
            StreamTimeoutOverride("analysis", None, 20_000, 0),
            StreamTimeoutOverride("synthesis", "vllm", 0, 5_000),
        ),
    )
    return replace(s, flags=flags)


def test_round_trips_through_the_store() -> None:
    s = _state()
    assert st.loads(st.dumps(s)) == s


def test_round_trips_through_the_proto() -> None:
    flags = _state().flags
    assert flags_from_proto(flags_to_proto(flags)) == flags


def test_duplicates_and_empty_entries_are_refused_naming_the_entry() -> None:
    s = default_state()
    flags = replace(
        s.flags,
        stream_timeouts=(
            StreamTimeoutOverride("analysis", "vllm", 1000, 0),
            StreamTimeoutOverride("analysis", "vllm", 2000, 0),
            StreamTimeoutOverride("synthesis", None, 0, 0),
        ),
    )
    paths = [v.field for v in validate_flags(flags, s.catalog)]
    assert paths == ["flags.stream_timeouts[1]", "flags.stream_timeouts[2]"]
