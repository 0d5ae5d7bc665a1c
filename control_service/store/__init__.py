"""Durable desired state: the :class:`StateStore` protocol and its SQLite implementation."""

from control_service.store._base import Change, Decision, Mutation, StateStore
from control_service.store.sqlite import SCHEMA_VERSION, SqliteStore

__all__ = ["SCHEMA_VERSION", "Change", "Decision", "Mutation", "SqliteStore", "StateStore"]
