"""A Hugging Face hub model id (Org/Name) read as its config.json, fetched through huggingface_hub
into its cache (nothing else is fetched); HF_HUB_OFFLINE=1 reads the cache only."""

from __future__ import annotations

from pathlib import Path

from commbench import CommbenchError


def looks_like_hub_id(name: str) -> bool:
    """Org/Name with no path that exists here and no .json suffix: a Hugging Face hub model id."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.endswith(".json") and not Path(name).exists() \
        and not name.startswith((".", "~"))


def fetch_hub_config(repo_id: str) -> Path:
    """config.json of a hub model, through huggingface_hub into its cache (nothing else is fetched).
    HF_HUB_OFFLINE=1 reads the cache only."""
    from commbench import require

    try:
        require("huggingface_hub")
    except CommbenchError as exc:
        raise CommbenchError(f"{repo_id!r} looks like a Hugging Face hub id; {exc}") from None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, "config.json"))
    except LocalEntryNotFoundError:
        raise CommbenchError(f"cannot fetch config.json of hub model {repo_id!r}: not in the hub cache and the hub "
                             "is unreachable (or HF_HUB_OFFLINE=1)") from None
    except (RepositoryNotFoundError, EntryNotFoundError):
        raise CommbenchError(f"hub model {repo_id!r} not found or has no config.json "
                             "(a gated model needs `huggingface-cli login`)") from None
    except Exception as exc:  # network errors, bad ids: one line, not a traceback
        raise CommbenchError(f"cannot fetch config.json of hub model {repo_id!r}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
