"""Channel options the clients use unless told otherwise."""

from __future__ import annotations

from collections.abc import Sequence

ChannelOption = tuple[str, str | int]

DEFAULT_CHANNEL_OPTIONS: tuple[ChannelOption, ...] = (
    # Large embedding batches exceed grpc's 4 MiB default (100 x 4096 float32 is ~1.6 MB).
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


def channel_options(overrides: Sequence[ChannelOption]) -> list[ChannelOption]:
    """The default options with ``overrides`` replacing same-named ones."""
    merged = dict(DEFAULT_CHANNEL_OPTIONS)
    merged.update(overrides)
    return list(merged.items())
