"""Backend simulator: speaks the Ollama and vLLM HTTP APIs with realistic timing and faults.

It lets the router, its tests, demos and benchmarks run on a machine with no GPU, no Ollama and
no vLLM. See docs/simulator.md.

    from llmsim import Flavor, SimConfig, simulator

    async with simulator(SimConfig(flavor=Flavor.VLLM)) as sim:
        ...  # talk to sim.base_url; change sim.faults; read sim.stats
"""

from llmsim._config import (
    DEFAULT_OLLAMA_MODELS,
    DEFAULT_VLLM_MODELS,
    PROFILES,
    Flavor,
    ModelSpec,
    SimConfig,
    Timing,
)
from llmsim._faults import Faults
from llmsim._server import RunningSimulator, simulator, start_simulator
from llmsim._state import SimStats

__all__ = [
    "DEFAULT_OLLAMA_MODELS",
    "DEFAULT_VLLM_MODELS",
    "PROFILES",
    "Faults",
    "Flavor",
    "ModelSpec",
    "RunningSimulator",
    "SimConfig",
    "SimStats",
    "Timing",
    "simulator",
    "start_simulator",
]
