"""commbench: measure the traffic of TP and PP LLM inference on a real fabric, and predict tok/s.

The flow, one module a step: model_card + plan + workload -> trace -> (backends, timing, sweep,
replay) -> fit / fabric -> compute + serving -> explain / report. Each step's output is a plain
value (frozen dataclass or tidy DataFrame) that can be saved and loaded.
"""

__version__ = "0.1.0"


class CommbenchError(Exception):
    """Bad input or an unrecoverable run condition; the CLI prints it as one line and exits 2."""
