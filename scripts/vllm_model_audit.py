"""Per-file inventory of the collective sites in vLLM's model files, for docs/vllm-model-audit.md.

Reads unpacked vLLM sources (`pip download vllm==X --no-deps`, unzip) with `ast` and regular
expressions, never importing them, and prints a markdown table with one row per file of
vllm/model_executor/models/*.py in any of the given versions:

    python scripts/vllm_model_audit.py 0.11.0=v0110/vllm 0.33.0=vcur/vllm > appendix.md

Columns: the file, the versions that have it, the `architectures` names the version's registry maps
to it, its role (decoder, multimodal, pooling, draft, helper), the collective call sites found (with
the enclosing Class.function), reduce_results flags, sequence-parallel branches, and the
IntermediateTensors keys its forward sends across a pipeline boundary. The inventory finds the
candidates; which of them issue traffic beyond the common pattern was read by hand (the family table
of docs/vllm-model-audit.md).
"""

from __future__ import annotations

import ast
import bisect
import re
import sys
from pathlib import Path

SITES = {  # label -> pattern of a call that issues (or may issue) a collective
    "all_reduce": r"tensor_model_parallel_all_reduce\s*\(",
    "all_gather": r"tensor_model_parallel_all_gather\s*\(",
    "reduce_scatter": r"tensor_model_parallel_reduce_scatter\s*\(",
    "gather": r"tensor_model_parallel_gather\s*\(",
    "moe_maybe_all_reduce": r"maybe_all_reduce_tensor_model_parallel\s*\(",
    "tp_group": r"get_tp_group\(\)\.(?:all_gather|all_reduce|reduce_scatter|broadcast|all_gatherv|gather)\s*\(",
    "gather_output": r"gather_output\s*=\s*True",
    "tp_norm": r"\b(?:\w*RMSNormTP|_all_reduce_variance)\s*\(",
}
FLAGS = {
    "reduce_results=True": r"reduce_results\s*=\s*True",
    "reduce_results=False": r"reduce_results\s*=\s*False",
    "sequence_parallel": r"sequence_parallel_chunk\s*\(|is_sequence_parallel\b|use_sequence_parallel_moe\b",
}
ROLE_OF_DICT = {"_TEXT_GENERATION_MODELS": "decoder", "_MULTIMODAL_MODELS": "multimodal",
                "_TRANSFORMERS_SUPPORTED_MODELS": "transformers", "_TRANSFORMERS_BACKEND_MODELS": "transformers",
                "_SPECULATIVE_DECODING_MODELS": "draft"}


def registry_by_module(registry_py: Path) -> dict[str, dict[str, list[str]]]:
    """module -> role -> architectures, from the registry's `_..._MODELS = {...}` literals."""
    out: dict[str, dict[str, list[str]]] = {}
    for node in ast.parse(registry_py.read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if not (isinstance(target, ast.Name) and target.id.endswith("_MODELS") and isinstance(node.value, ast.Dict)):
            continue
        if target.id == "_PREVIOUSLY_SUPPORTED_MODELS" or target.id == "_OOT_SUPPORTED_MODELS":
            continue
        role = ROLE_OF_DICT.get(target.id, "pooling")
        for k, v in zip(node.value.keys, node.value.values):
            if k is None:
                continue
            module = ast.literal_eval(v)[0]
            out.setdefault(module, {}).setdefault(role, []).append(ast.literal_eval(k))
    return out


def _enclosing(tree: ast.AST):
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            spans += [(f.lineno, f.end_lineno, f"{node.name}.{f.name}") for f in node.body
                      if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            spans.append((node.lineno, node.end_lineno, node.name))

    def at(line: int) -> str:
        inside = [(b - a, name) for a, b, name in spans if a <= line <= b]
        return min(inside)[1] if inside else "module"
    return at


def _boundary(src: str) -> str:
    """Keys of the IntermediateTensors({...}) a forward returns (else the empty-tensor factory's)."""
    keys = set()
    for m in re.finditer(r"return\s+IntermediateTensors\s*\(\s*\{", src):
        body = src[m.end(): m.end() + 400].split("}")[0]
        keys |= set(re.findall(r'"(\w+)"\s*:', body))
    if not keys:
        for m in re.finditer(r"make_empty_intermediate_tensors_factory\s*\(\s*\[([^\]]*)\]", src):
            keys |= set(re.findall(r'"(\w+)"', m.group(1)))
    text = ", ".join(sorted(keys, key=lambda k: (k != "hidden_states", k)))
    if not text and re.search(r"return\s+IntermediateTensors\s*\(\s*\w", src):
        text = "built in forward (read the file)"
    if not re.search(r"class \w+\([^)]*\bSupportsPP\b", src, re.S):
        text = "no PP (no SupportsPP class)" if not text else text + " (no SupportsPP class here)"
    return text


def scan(path: Path) -> dict:
    src = path.read_text()
    at = _enclosing(ast.parse(src))
    starts = [0]
    for line in src.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    lines = src.splitlines()

    def hits(pattern: str) -> list[str]:
        out = []
        for m in re.finditer(pattern, src):
            n = bisect.bisect_right(starts, m.start())
            text = lines[n - 1].strip()
            if text.startswith(("#", "from ", "import ")) or text.startswith('"') or text.endswith(","):
                if not re.search(r"\(", text.split("#")[0]):
                    continue
            out.append(at(n))
        return out

    sites = {label: hits(p) for label, p in SITES.items()}
    flags = {label: len(hits(p)) for label, p in FLAGS.items()}
    return {"sites": {k: v for k, v in sites.items() if v}, "flags": {k: v for k, v in flags.items() if v},
            "boundary": _boundary(src)}


def _sites_text(sites: dict) -> str:
    parts = []
    for label, where in sites.items():
        funcs = sorted(set(where))
        parts.append(f"{label} x{len(where)} ({', '.join(funcs)})")
    return "; ".join(parts) or "-"


def main() -> None:
    versions = [(spec.split("=", 1)[0], Path(spec.split("=", 1)[1])) for spec in sys.argv[1:]]
    if not versions:
        raise SystemExit(__doc__)
    registries = {v: registry_by_module(root / "model_executor" / "models" / "registry.py") for v, root in versions}
    files = sorted({p.name for _, root in versions for p in (root / "model_executor" / "models").glob("*.py")})
    print("| file | versions | architectures (registry) | role | collective sites found | flags | PP boundary sent |")
    print("|---|---|---|---|---|---|---|")
    for name in files:
        module = name[:-3]
        present = [v for v, root in versions if (root / "model_executor" / "models" / name).exists()]
        cells_arch, roles, cells_sites, cells_flags, cells_boundary = [], set(), [], [], []
        for v, root in versions:
            if v not in present:
                continue
            by_role = registries[v].get(module, {})
            archs = sorted({a for names in by_role.values() for a in names})
            roles |= set(by_role)
            cells_arch.append(f"{v}: {', '.join(archs) if archs else '-'}")
            info = scan(root / "model_executor" / "models" / name)
            cells_sites.append(f"{v}: {_sites_text(info['sites'])}")
            cells_flags.append(f"{v}: {', '.join(f'{k} x{n}' for k, n in info['flags'].items()) or '-'}")
            cells_boundary.append(f"{v}: {info['boundary'] or '-'}")

        def merged(cells: list[str]) -> str:  # one cell when every version says the same
            bodies = {c.split(": ", 1)[1] for c in cells}
            return cells[0].split(": ", 1)[1] if len(bodies) == 1 and len(cells) == len(versions) else "<br>".join(cells)

        role = "/".join(sorted(roles)) if roles else "helper (no registry entry)"
        print(f"| {name} | {', '.join(present)} | {merged(cells_arch)} | {role} | {merged(cells_sites)} | "
              f"{merged(cells_flags)} | {merged(cells_boundary)} |")


if __name__ == "__main__":
    main()
