"""Engine-pool replica URLs as operators write them: ``"http://a:8000, http://b:8000/"``.

Shared by the router (its pools) and the control service (which probes every replica), so
both read ``OLLAMA_BASE_URLS`` / ``VLLM_BASE_URLS`` the same way."""

from __future__ import annotations

__all__ = ["check_urls", "split_urls"]


def split_urls(value: str) -> list[str]:
    """The URLs of a comma-separated list, trailing slashes off, first occurrence kept."""
    out: list[str] = []
    for part in value.split(","):
        url = part.strip().rstrip("/")
        if url and url not in out:
            out.append(url)
    return out


def check_urls(value: str) -> str:
    """``value`` unchanged, or ``ValueError`` naming the first URL that is not http(s)."""
    for url in split_urls(value):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} must be an http:// or https:// URL")
    return value
