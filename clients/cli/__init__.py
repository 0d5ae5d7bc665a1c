"""``llmctl``: the operator CLI of the LLM gateway (entry point :func:`clients.cli.main.main`)."""
