"""The old entry point of the log readers, kept for callers: see commbench.logs (one module per tool)."""

from commbench.logs import EXPECTED, LogTable, read_log, read_sweep, reading_options

__all__ = ["EXPECTED", "LogTable", "read_log", "read_sweep", "reading_options"]
