"""The control service's metrics and its vLLM metrics reader."""

from control_service.telemetry._metrics import (
    ControlStateCollector,
    RollbackObserver,
    VllmMetricsReader,
)
from control_service.telemetry.vllm_metrics import VllmFigures, parse_vllm_metrics

__all__ = [
    "ControlStateCollector",
    "RollbackObserver",
    "VllmFigures",
    "VllmMetricsReader",
    "parse_vllm_metrics",
]
