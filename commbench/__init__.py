"""commbench: measure the traffic of TP and PP LLM inference on a real fabric, and predict tok/s.

The flow, one subpackage a step: traffic (model card + plan + workload -> trace) -> measure
(backends, timing, world, sweep, replay) -> fabric (fits, validate) -> predict (hardware, compute,
serving, explain, accuracy) -> report. Each step's output is a plain value (frozen dataclass or
tidy DataFrame) that can be saved and loaded. The base install traces, predicts, fits and
explains; measuring needs the `measure` extra (torch), plots the `plots` extra (matplotlib).
"""

__version__ = "0.1.0"


class CommbenchError(Exception):
    """Bad input or an unrecoverable run condition; the CLI prints it as one line and exits 2."""


EXTRAS = {"torch": "measure", "matplotlib": "plots", "mpi4py": "mpi", "cupy": "gpu", "huggingface_hub": "hub"}


def require(module: str):
    """Import an optional dependency, or a one-line error naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        extra = EXTRAS.get(top, top)
        raise CommbenchError(f"this needs {top}, which this install lacks: pip install 'commbench[{extra}]'") from None


def lazy_module(name: str):
    """`name`, imported on first attribute access (importlib.util.LazyLoader): modules that use
    pandas only to print or save tables keep `commbench trace` from paying its ~0.3 s import."""
    import importlib.util
    import sys

    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None:
        return require(name)  # the one-line error naming the extra
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
