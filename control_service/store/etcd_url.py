"""The ``etcd://host:port,host:port`` store URL (plain parsing: no etcd client imported)."""

from __future__ import annotations


def parse_endpoints(spec: str) -> list[str]:
    """``etcd://h:p,h:p`` (or bare ``h:p,h:p``) → ``["h:p", ...]``; port 2379 when omitted."""
    body = spec.removeprefix("etcd://").strip().rstrip("/")
    out = []
    for part in body.split(","):
        part = part.strip()
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not port.isdigit():
            host, port = part, "2379"
        out.append(f"{host}:{int(port)}")
    if not out:
        raise ValueError(f"no etcd endpoint in {spec!r}")
    return out
