"""Tool-call fragments from either engine, normalised to one shape.

Ollama sends whole calls (``message.tool_calls``, arguments as an object), vLLM fragments
(``delta.tool_calls[index]``, arguments as partial JSON text). Both become
:class:`ToolCallFragment`: the first fragment of a call carries its id and name. A fragment that
arrives with a new id at an index already in use starts a new call (some engines restart
indices per chunk), so output indices are the router's own and never collide.
"""

from __future__ import annotations

from router_service.values import ToolCallFragment


class ToolCallNormaliser:
    def __init__(self, request_id: str) -> None:
        self._rid = request_id
        self._open: dict[int, tuple[int, str]] = {}  # engine index → (our index, id)
        self.count = 0

    def fragment(
        self, engine_index: int | None, call_id: str | None, name: str | None, arguments: str
    ) -> ToolCallFragment:
        key = engine_index if engine_index is not None else -1
        current = self._open.get(key)
        if current is None or (call_id and call_id != current[1]):
            ours = self.count
            self.count += 1
            new_id = call_id or f"call_{self._rid[:24]}_{ours}"
            self._open[key] = (ours, new_id)
            return ToolCallFragment(ours, new_id, name or "", arguments)
        return ToolCallFragment(current[0], "", name or "", arguments)

    def whole(
        self, engine_index: int | None, call_id: str | None, name: str, arguments: str
    ) -> ToolCallFragment:
        """A complete call (Ollama): always a call of its own, as one fragment."""
        ours = self.count
        self.count += 1
        new_id = call_id or f"call_{self._rid[:24]}_{ours}"
        if engine_index is not None:
            self._open[engine_index] = (ours, new_id)
        return ToolCallFragment(ours, new_id, name, arguments)
