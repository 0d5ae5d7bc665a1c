"""No single router's reports alone roll the fleet back (issue 21).

A router that lies within the ceilings of ``control_service.stats_validation`` (say, every
request an error) could otherwise push the error-rate or latency rule over its threshold and
take vLLM out of service for everyone. So with two or more routers reporting vLLM traffic, a
rule's FAIL stands only when it also fails with each router's reports left out in turn
(leave-one-out): a fault every router sees survives the test, one router's story does not.
That FAIL becomes INCONCLUSIVE (hold) naming the router it rests on; the automation neither
rolls back nor clears, and the operator sees why in the evidence. A fleet of one router is its
own whole fleet and is judged as before.

The health rule reads the engine probes, not the routers; leaving a router out never changes
it. The consecutive-timeouts rule has its own agreement knob (``timeout_routers_required``);
when that asks for two or more routers it is ``exempt`` here (leave-one-out would silently
raise it by one). Plain Python.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from control_service.rollback.rules import Outcome, RuleResult


def require_agreement(
    results: Sequence[RuleResult],
    routers: Sequence[str],
    without: Callable[[str], Sequence[RuleResult]],
    exempt: frozenset[str] = frozenset(),
) -> tuple[RuleResult, ...]:
    """``results`` with each FAIL that rests on one router's reports turned into a hold.
    ``without(router)`` evaluates the same rules with that router's reports left out."""
    if len(routers) < 2 or not any(r.outcome is Outcome.FAIL for r in results):
        return tuple(results)
    out = list(results)
    for router in sorted(routers):
        alone = {r.rule: r for r in without(router)}
        for i, result in enumerate(out):
            if result.outcome is not Outcome.FAIL or result.rule in exempt:
                continue
            other = alone.get(result.rule)
            if other is not None and other.outcome is not Outcome.FAIL:
                out[i] = replace(
                    result,
                    outcome=Outcome.INCONCLUSIVE,
                    detail=f"{result.detail}; without router {router}'s reports: "
                    f"{other.outcome.value} ({other.detail}): hold (agreement rule)",
                )
    return tuple(out)
