"""The config subscriber's state in the standard gRPC health service, under its own name.

A router whose control session is lost keeps serving its last good snapshot: that is the point of
the snapshot (and of persisting it). So the router's own health (``""`` and
``llmgateway.v1.RouterService``) stays SERVING while its engines can answer; if it turned
NOT_SERVING, Kubernetes would pull every router out of the Service, or restart them, at the
moment the control plane is down, turning a control-plane outage into a data-plane one.

The subscriber's view is published separately as ``llmgateway.v1.RouterService/config``:

- SERVING: synced, or stale within ``config_stale_grace_s`` (a reconnect is under way);
- NOT_SERVING: never synced since start (CONNECTING: serving the bootstrap or a persisted
  snapshot), or ERROR (stale past the grace, or refused by the control service).

Monitoring alerts on it; an operator may point a readiness probe at it where a router must not
take traffic with old config. A standalone router (no control address) has nothing to go stale:
its static config is the config, so its ``/config`` is SERVING.
"""

from __future__ import annotations

import asyncio
import contextlib

from llmcore.serving import GrpcServer
from router_service.config.subscriber import ConfigSubscriber, SubscriberState

CONFIG_HEALTH_SUFFIX = "/config"

_FRESH = {SubscriberState.SYNCED, SubscriberState.STALE}


def config_serving(state: SubscriberState) -> bool:
    """Whether config from the control service is current enough to call healthy."""
    return state in _FRESH


async def start_config_health(
    stack: contextlib.AsyncExitStack, server: GrpcServer, subscriber: ConfigSubscriber | None
) -> str:
    """Publish the subscriber's state under ``<service>/config`` for each service the server
    serves, now and on every change, until ``stack`` closes. Returns the first name."""
    names = [f"{s}{CONFIG_HEALTH_SUFFIX}" for s in server.services]

    async def publish(serving: bool) -> None:
        for name in names:
            await server.set_serving(name, serving)

    if subscriber is None:
        await publish(True)
        return names[0]

    async def follow(sub: ConfigSubscriber) -> None:
        while True:
            await publish(config_serving(sub.state))
            await sub.wait_change()

    await publish(config_serving(subscriber.state))
    task = asyncio.create_task(follow(subscriber), name="config-health")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)
    return names[0]
