"""Where the data folders (model_traces/, patterns/, hardware/) are, installed or in a checkout.

A wheel carries them under commbench/_data/ (pyproject's force-include); a checkout or an
editable install finds them beside the package at the repository root.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from commbench import CommbenchError

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder `name` (model_traces, patterns or hardware), from a wheel or a checkout."""
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise CommbenchError(f"data folder {name!r} not found beside {_PACKAGE_DIR}; reinstall commbench")


def names_in(name: str, suffix: str) -> list[str]:
    """Stems of the files with `suffix` in data folder `name`, sorted."""
    return sorted(p.stem for p in data_dir(name).glob(f"*{suffix}"))


def unknown_name_error(kind: str, value: str, choices: list[str]) -> CommbenchError:
    """One-line error naming the bad value, the closest matches and every valid choice."""
    close = difflib.get_close_matches(value, choices, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return CommbenchError(f"unknown {kind} {value!r}.{hint} Valid: {', '.join(choices)}")
