"""Tests of the typed client library (clients.llm) and llmctl (clients.cli)."""
