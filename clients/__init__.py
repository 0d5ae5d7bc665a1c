"""Client side of the LLM gateway: generated stubs, the typed client library and ``llmctl``."""
