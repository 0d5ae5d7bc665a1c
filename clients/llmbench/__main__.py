"""``python -m clients.llmbench`` is ``llm-bench``."""

from clients.llmbench._cli import main

main()
