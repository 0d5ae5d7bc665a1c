"""What tools built on llmctl may use: the views and parsers llmctl itself prints and reads.

The drill (``llmtools.drill``) narrates each step with what the equivalent ``llmctl`` command
would print; it imports these names from here, never from the private ``clients.cli._*``
modules, which may be split or renamed. Everything here is formatting or parsing (no I/O).
"""

from __future__ import annotations

from clients.cli._control_flags import parse_assignments
from clients.cli._errors import exit_status
from clients.cli._gonogo import gate_document, gate_lines
from clients.cli._output import WatchView, format_pairs, format_table
from clients.cli._shadow import report_document, report_lines
from clients.cli._values import message_dict, phase_label, status_label

__all__ = [
    "WatchView",
    "exit_status",
    "format_pairs",
    "format_table",
    "gate_document",
    "gate_lines",
    "message_dict",
    "parse_assignments",
    "phase_label",
    "report_document",
    "report_lines",
    "status_label",
]
