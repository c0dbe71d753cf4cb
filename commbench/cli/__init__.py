"""The click layer: thin wrappers over the library, one module per step of the flow. Every
command's help ends with an example; `commbench.__main__:run` is the console script (it imports this and runs `main`)."""

from commbench.cli import compare, fabric, measure, predict, report, traffic  # noqa: F401  (each registers its commands)
from commbench.cli.base import main

__all__ = ["main"]
