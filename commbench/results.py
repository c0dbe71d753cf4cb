"""Saving and loading tidy result tables with their environment metadata (pyperf-style).

A table is saved as CSV (metadata in a sidecar `<file>.meta.json`), JSON
(`{"schema_version", "metadata", "rows"}`) or Parquet (metadata in the file's key-value store).
Writes go to a temporary file renamed into place, so a failed run leaves no partial file.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from commbench import CommbenchError, __version__, lazy_module

pd = lazy_module("pandas")  # imported on first use: trace --json reports the environment without it

SCHEMA_VERSION = 1
FORMATS = (".csv", ".json", ".parquet")
ENV_PREFIXES = ("NCCL_", "GLOO_", "MASTER_", "UCX_", "CUDA_VISIBLE", "TORCH_NCCL_", "TORCH_DISTRIBUTED",
                "OMPI_MCA_", "PRTE_MCA_", "PMIX_MCA_", "MPIR_CVAR_", "HYDRA_", "FI_")
"""Environment variables saved with results: the ones that change what is measured (transport,
interface, protocol and MCA settings), not a launcher's bookkeeping (OMPI_COMM_WORLD_*, PMIX_RANK...)."""


def environment_metadata(**extra) -> dict:
    """Library versions, host, interpreter and the communication environment variables."""
    versions = {"commbench": __version__, "python": platform.python_version()}
    from importlib import metadata

    for dist in ("pandas", "torch", "mpi4py", "numpy", "matplotlib"):  # installed versions, imported or not
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    if "cupy" in sys.modules:  # its distribution name depends on the CUDA build
        versions["cupy"] = sys.modules["cupy"].__version__
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        versions["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            versions["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    return {
        "schema_version": SCHEMA_VERSION,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "argv": sys.argv,
        "versions": versions,
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
        **extra,
    }


def check_output_path(path: str | Path, formats=FORMATS) -> Path:
    """A known format whose folder can be written, checked before any work (a sweep's results are
    not lost to an unwritable --out at its end); one-line errors naming the path. A CSV's
    metadata sidecar (`<file>.meta.json`) must be writable too."""
    if not str(path).strip():
        raise CommbenchError(f"an empty output path names no file; give one like results{formats[0]}")
    path = Path(path)
    if path.suffix not in formats:
        raise CommbenchError(f"unknown output format {path.suffix or path.name!r}; valid: {', '.join(formats)}")
    for target in (path, path.with_name(path.name + ".meta.json")) if path.suffix == ".csv" else (path,):
        if target.is_dir():
            raise CommbenchError(f"cannot write {str(target)!r}: it is a folder")
    check_writable(path)
    return path


def check_writable(path: str | Path) -> None:
    """Raise a one-line error unless a file can be created beside `path` (its folder made if missing)."""
    folder = Path(path).parent
    blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise CommbenchError(f"cannot write {str(path)!r}: {str(blocker)!r} is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CommbenchError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


def check_writable_folder(folder: str | Path) -> Path:
    """Raise a one-line error unless files can be written in `folder`, checked before any work and
    without making it: a temporary folder is made and removed in its nearest existing ancestor."""
    if not str(folder).strip():
        raise CommbenchError("an empty output folder names no folder; give one like reports/my-run")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CommbenchError(f"cannot write folder {str(folder)!r}: it is a file")
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    try:
        if not ancestor.is_dir():
            raise NotADirectoryError(20, f"{str(ancestor)!r} is not a folder")
        tempfile.TemporaryDirectory(dir=ancestor).cleanup()
    except OSError as exc:
        raise CommbenchError(f"cannot write folder {str(folder)!r}: {exc.strerror or exc}") from None
    return folder


def atomic_write(path: Path, write) -> None:
    """`write(tmp)` into a temporary file beside `path`, then rename it over `path`: readers see the
    old file or the whole new one, never a torn one; on failure nothing is left. The file gets the
    mode a plain open() would (0666 less the umask), not mkstemp's private 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_table(frame: pd.DataFrame, path: str | Path, metadata: dict) -> Path:
    """Save `frame` with `metadata` in the format the suffix names (.csv, .json, .parquet)."""
    path = check_output_path(path)
    if path.suffix == ".csv":
        atomic_write(path, lambda p: _json_lists(frame).to_csv(p, index=False))
        atomic_write(path.with_name(path.name + ".meta.json"), lambda p: p.write_text(json.dumps(metadata, indent=2, default=str)))
    elif path.suffix == ".json":
        doc = {"schema_version": SCHEMA_VERSION, "metadata": metadata, "rows": frame.to_dict(orient="records")}
        atomic_write(path, lambda p: p.write_text(json.dumps(doc, indent=1, default=str)))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"commbench": json.dumps(metadata, default=str).encode()})
        atomic_write(path, lambda p: pq.write_table(table, p))
    return path


def _json_lists(frame: pd.DataFrame) -> pd.DataFrame:
    """List cells (raw samples) as JSON arrays of plain numbers, so a CSV reads back exactly."""
    columns = [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any()]
    if not columns:
        return frame
    out = frame.copy()
    for c in columns:
        out[c] = out[c].map(lambda v: json.dumps([float(x) for x in v]) if isinstance(v, (list, tuple, np.ndarray)) else v)
    return out


def _read_json_lists(frame: pd.DataFrame) -> pd.DataFrame:
    for c in frame.columns:
        if (frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])) and frame[c].map(lambda v: isinstance(v, str) and v.startswith("[")).all():
            try:
                frame[c] = frame[c].map(json.loads)
            except ValueError:
                pass  # not JSON (e.g. an older file's numpy text): left as it is
    return frame


def load_table(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Load a table saved by save_table (or any CSV with the same columns) and its metadata."""
    path = Path(path)
    if not path.is_file():
        raise CommbenchError(f"cannot read results file {str(path)!r}: no such file")
    if path.suffix not in FORMATS:  # read where it lies: a read-only folder of results is fine
        raise CommbenchError(f"unknown results format {path.suffix or path.name!r}; valid: {', '.join(FORMATS)}")
    try:
        if path.suffix == ".csv":
            meta_path = path.with_name(path.name + ".meta.json")
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            return _read_json_lists(pd.read_csv(path)), meta
        if path.suffix == ".json":
            doc = json.loads(path.read_text())
            return pd.DataFrame(doc["rows"]), doc.get("metadata", {})
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(b"commbench", b"{}")
        return table.to_pandas(), json.loads(raw)
    except (ValueError, KeyError, OSError) as exc:
        raise CommbenchError(f"cannot read results file {str(path)!r}: {exc}") from None
    except RecursionError:
        raise CommbenchError(f"cannot read results file {str(path)!r}: nested deeper than {sys.getrecursionlimit()} "
                             "levels; not a commbench table") from None


def host_memory_bytes() -> float:
    """This host's available memory (MemAvailable), bytes; total physical memory where /proc is absent."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
