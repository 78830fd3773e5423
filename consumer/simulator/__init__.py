"""A local Twilio simulator: a real HTTP server that validates requests against the official spec.

`kafka-twilio simulator --port 8099 --latency-ms 50` serves it in the foreground; tests use
`running_simulator(SimulatorConfig(...))`, which serves it from a background thread. The special
numbers that trigger Twilio errors are listed in `consumer.simulator.behaviours`.
"""

from __future__ import annotations

from consumer.simulator.config import SimulatorConfig
from consumer.simulator.handle import SimulatorHandle, running_simulator

__all__ = ["SimulatorConfig", "SimulatorHandle", "main", "running_simulator"]


def main(argv: list[str]) -> int:
    """`kafka-twilio simulator`: serve the simulator until interrupted."""
    from consumer.simulator.command import run

    return run(argv)
