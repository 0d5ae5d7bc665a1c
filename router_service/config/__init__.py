"""The router's view of the control service's desired state: snapshots, their persistence and
the subscriber that keeps them current."""

from router_service.config.holder import ConfigHolder
from router_service.config.routing import (
    ConfigError,
    RoutingConfig,
    bootstrap_config,
    from_snapshot,
)

__all__ = ["ConfigError", "ConfigHolder", "RoutingConfig", "bootstrap_config", "from_snapshot"]
