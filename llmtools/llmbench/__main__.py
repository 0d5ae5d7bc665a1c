"""``python -m llmtools.llmbench`` is ``llm-bench``."""

from llmtools.llmbench._cli import main

main()
