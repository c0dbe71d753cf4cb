"""The click layer: thin wrappers over the library, one module per step of the flow. Every
command's help ends with an example; `commbench.cli:main` is the console script."""

from commbench.cli import compare, fabric, measure, predict, report, traffic  # noqa: F401  (each registers its commands)
from commbench.cli.base import main

__all__ = ["main"]
