"""When routers mirror requests to the shadow engine: one rule, shared by the control service
(which publishes it in ``ConfigSnapshot.mirroring`` for operators) and the router (which acts
on it), so what ``llmctl status`` says is what the routers do.

PHASE_SHADOW exists to shadow: entering it mirrors, whatever ``shadow_enabled`` says (a new
operator who promotes to SHADOW and sets a sample rate gets comparisons). In PHASE_SPLIT the
flags decide (``shadow_enabled`` and ``shadow_during_split``), so a split can keep measuring the
sample it does not yet send to vLLM. FACADE and PRIMARY never mirror, nor does an aborted
migration (its phase is FACADE).
"""

from __future__ import annotations


def mirroring(
    phase: str, *, shadow_enabled: bool, shadow_during_split: bool, has_shadow_provider: bool
) -> bool:
    """Whether requests are mirrored; ``phase`` is the bare name (``"SHADOW"``)."""
    if not has_shadow_provider:
        return False
    if phase == "SHADOW":
        return True
    return phase == "SPLIT" and shadow_enabled and shadow_during_split
