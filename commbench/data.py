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


def check_choices(checks, prefix: str = "") -> None:
    """For each (kind, value, valid choices): a one-line error "unknown KIND 'value'; valid: ..." at the first bad one."""
    for kind, value, valid in checks:
        if value not in valid:
            raise CommbenchError(f"{prefix}unknown {kind} {value!r}; valid: {', '.join(valid)}")


def read_toml(path, kind: str) -> dict:
    """A TOML file as a dict, or a one-line error naming the file: unreadable, not text, or not TOML."""
    import tomllib

    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CommbenchError(f"{kind} file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommbenchError(f"{kind} file {str(path)!r} is not readable text ({type(exc).__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise CommbenchError(f"{kind} file {str(path)!r} is not valid TOML: {exc}") from None
    except RecursionError:
        raise CommbenchError(f"{kind} file {str(path)!r} is not valid TOML: nested deeper than the reader goes") from None


def number(value, what: str, minimum: float = 0.0, inclusive: bool = False) -> float:
    """`value` as a finite float above `minimum` (or equal to it with inclusive), else a one-line error."""
    import math

    try:
        x = float(value)
    except (TypeError, ValueError):
        raise CommbenchError(f"{what} = {value!r} is not a number") from None
    if not math.isfinite(x) and not (x == math.inf and what.endswith("up_to_bytes")):
        raise CommbenchError(f"{what} = {value!r} must be finite")
    if x < minimum or (x == minimum and not inclusive):
        raise CommbenchError(f"{what} = {value!r} must be {'at least' if inclusive else 'above'} {minimum:g}")
    return x
