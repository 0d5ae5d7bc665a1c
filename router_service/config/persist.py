"""The last good snapshot on disk, so a router restarted without a control service still routes.

Written atomically (temp file, fsync, rename, fsync of the directory): a crash leaves either the
old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from google.protobuf.message import DecodeError

from clients.gen.llmgateway.v1 import control_pb2

log = logging.getLogger(__name__)


def save_snapshot(path: Path, snapshot_bytes: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(snapshot_bytes)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_snapshot(path: Path) -> control_pb2.ConfigSnapshot | None:
    """The persisted snapshot, or None when there is none or it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read persisted config %s: %s", path, exc)
        return None
    snap = control_pb2.ConfigSnapshot()
    try:
        snap.ParseFromString(data)
    except DecodeError as exc:
        log.warning("persisted config %s is corrupt (%s); ignoring it", path, exc)
        with contextlib.suppress(OSError):
            path.rename(path.with_suffix(path.suffix + ".corrupt"))
        return None
    return snap
