"""Citations a user can follow (issue 23): code, data and docs cite files that exist in this tree,
sections that exist in them, and never a path outside the repository; the README's "Where to change
what" names files and names that exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP = ("docs", "commbench", "patterns", "model_traces", "hardware", "fabrics", "recipes", "published", "reports",
       "scripts", "tests", "benchmarks")
SCANNED = ("commbench", "patterns", "model_traces", "hardware", "fabrics", "recipes", "published", "scripts",
           "benchmarks", "docs")
SUFFIXES = {".py", ".toml", ".json", ".csv", ".md", ".sh", ".txt"}
OUTSIDE = re.compile(r"\.\./" + "shared|shared/" + "reference|/work/" + "shared")
# a path into this tree: one of its top-level folders, not part of a longer path (vllm/benchmarks/...)
IN_TREE = re.compile(r"(?<![\w/.\-])((?:%s)/[\w./\-]*\w\.(?:md|py|toml|json|csv|sh))(#[\w\-]+)?" % "|".join(TOP))
# a line that names another project cites that project's paths (vLLM's benchmarks/..., b12x's docs/...)
EXTERNAL = re.compile(r"vllm|b12x|nccl-tests|llama\.cpp|github\.com|huggingface\.co", re.I)
MD_LINK = re.compile(r"\]\((?!https?://|#|mailto:)([^)#\s]+)(#[\w\-]+)?\)")


def _files():
    files = [ROOT / "README.md"]
    for folder in SCANNED:
        files += [p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in SUFFIXES]
    return files


def _anchors(markdown: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    slugs = set()
    for line in markdown.read_text().splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            slugs.add(re.sub(r"\s", "-", re.sub(r"[^\w\s\-]", "", m.group(1).strip().lower())))
    return slugs


def test_nothing_cites_a_path_outside_the_repository():
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in _files() + sorted((ROOT / "tests").rglob("*.py"))
            if p.name != "test_sources.py"
            for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if OUTSIDE.search(line)]
    assert hits == []


def test_every_cited_file_and_section_exists():
    missing = []
    for path in _files():
        text = path.read_text(errors="replace")
        refs = [(m.group(1), m.group(2), ROOT) for line in text.splitlines() if not EXTERNAL.search(line)
                for m in IN_TREE.finditer(line)]
        if path.suffix == ".md":  # relative markdown links resolve from the file's folder
            refs += [(m.group(1), m.group(2), path.parent) for m in MD_LINK.finditer(text)]
        for target, anchor, base in refs:
            if any(c in target for c in "*{<") or "NAME" in target:
                continue  # a pattern (patterns/*.toml, hardware/NAME.toml), not one file
            file = (base / target).resolve()
            if not file.exists():
                missing.append(f"{path.relative_to(ROOT)}: {target}")
            elif anchor and file.suffix == ".md" and anchor[1:] not in _anchors(file):
                missing.append(f"{path.relative_to(ROOT)}: {target}{anchor} (no such section)")
    assert missing == []


def test_sources_sections_each_give_a_public_source():
    """Every section of docs/sources.md carries at least one URL, or says it is this project's own rule."""
    text = (ROOT / "docs/sources.md").read_text()
    sections = re.split(r"\n## ", text)[1:]
    assert len(sections) >= 8
    for section in sections:
        name = section.splitlines()[0]
        assert "https://" in section or "this project's" in section, name


def _where_to_change_what() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    block = text.split("### Where to change what", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|")[1:3] for line in block.splitlines() if line.startswith("| ") and "---" not in line]
    return [(what.strip(), change) for what, change in rows[1:]]  # the header row out


def _defined(name: str, files) -> bool:
    pattern = re.compile(rf"^\s*(?:class |def )?{re.escape(name)}\b|^\s*{re.escape(name)}\s*[:=]|^\[{re.escape(name)}", re.M)
    return any(pattern.search(f.read_text()) for f in files)


@pytest.mark.parametrize("row", range(len(_where_to_change_what())))
def test_where_to_change_what_names_files_and_names_that_exist(row):
    """Each backticked place in the README's table: a file or folder that exists (module paths are under
    commbench/), `module.NAME` a name defined in that module, a bare NAME defined somewhere in commbench."""
    what, change = _where_to_change_what()[row]
    code = sorted((ROOT / "commbench").rglob("*.py")) + sorted((ROOT / "model_traces").glob("*.toml"))  # a TOML key counts
    problems = []
    for token in re.findall(r"`([^`]+)`", change):
        if " " in token or token.startswith("commbench ") or "=" in token:
            continue  # a command or a TOML line, not a place
        token = token.rstrip("/")
        if "*" in token or "NAME" in token:  # patterns/*.toml, hardware/NAME.toml: the folder exists
            if not (ROOT / token.split("/")[0]).is_dir():
                problems.append(token)
            continue
        if (ROOT / token).exists() or (ROOT / "commbench" / token).exists():
            continue
        stem, _, attr = token.rpartition(".")
        if "/" in token and stem:  # measure/sweeps._collective_calls, traffic/trace.ENGINES
            module = next((p for p in (ROOT / "commbench" / f"{stem}.py", ROOT / f"{stem}.py") if p.exists()), None)
            if module is None or not _defined(attr.split(".")[0], [module]):
                problems.append(token)
        elif "." in token and not token.endswith((".py", ".toml", ".md")):  # EngineOptions.capture_sizes
            if not _defined(token.split(".")[0], code):
                problems.append(token)
        elif re.fullmatch(r"[A-Za-z_]\w*", token):  # BACKENDS, MIXER_KINDS
            if not _defined(token, code):
                problems.append(token)
        else:
            problems.append(token)
    assert problems == [], f"README 'Where to change what', {what}: {problems}"


def test_where_to_change_what_covers_every_kind_of_change():
    rows = {what for what, _ in _where_to_change_what()}
    for needed in ("a collective", "a launcher", "a backend", "a model family", "an engine generation"):
        assert needed in rows
