"""Write model_traces/engine_registry.toml: which `architectures` names each engine generation serves.

Reads vLLM's own model registry (vllm/model_executor/models/registry.py, parsed with `ast`, never
imported) from an unpacked vLLM source per engine generation, e.g.

    pip download vllm==0.11.0 --no-deps && unzip vllm-0.11.0-*.whl -d v0110
    python scripts/engine_registry.py --engine vllm-v1=0.11.0=v0110/vllm \\
        --engine vllm-v2=0.33.0=vcur/vllm > model_traces/engine_registry.toml

Tables per generation (arch = the registry's module name):
  generate              _TEXT_GENERATION_MODELS and _MULTIMODAL_MODELS (decoders commbench traces)
  transformers_backend  _TRANSFORMERS_SUPPORTED_MODELS and _TRANSFORMERS_BACKEND_MODELS (served through
                        vLLM's Transformers modeling backend: the TP plan is the HF model's tp_plan)
  pooling               embedding / cross-encoder / reward / classification / late-interaction models
  draft                 _SPECULATIVE_DECODING_MODELS (draft and MTP heads, not served alone)
  removed               _PREVIOUSLY_SUPPORTED_MODELS: arch = the last vLLM version that served it
  cannot_build          read by hand (CANNOT_BUILD below), not from registry.py: commbench block kinds
                        (traffic/layer_blocks.BLOCKS) a registered name's model file cannot build in that version
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

GROUPS = {
    "generate": ("_TEXT_GENERATION_MODELS", "_MULTIMODAL_MODELS"),
    "transformers_backend": ("_TRANSFORMERS_SUPPORTED_MODELS", "_TRANSFORMERS_BACKEND_MODELS"),
    "pooling": ("_EMBEDDING_MODELS", "_CROSS_ENCODER_MODELS", "_LATE_INTERACTION_MODELS", "_REWARD_MODELS",
                "_TOKEN_CLASSIFICATION_MODELS", "_SEQUENCE_CLASSIFICATION_MODELS"),
    "draft": ("_SPECULATIVE_DECODING_MODELS",),
    "removed": ("_PREVIOUSLY_SUPPORTED_MODELS",),
}


#: Layers a registered architecture's model file cannot build in a version, read from the file by hand:
#: {vLLM version: {architecture: (commbench blocks, where vLLM says so)}}.
CANNOT_BUILD = {
    "0.11.0": {
        "NemotronHForCausalLM": (["moe"], "vllm/model_executor/models/nemotron_h.py ALL_DECODER_LAYER_TYPES has "
                                          "M, - and * only: no E (MoE) layer, added in a later release"),
    },
}


def registry_dicts(path: Path) -> dict[str, dict]:
    """Every module-level `_..._MODELS = {...}` literal of registry.py, by name."""
    out = {}
    for node in ast.parse(path.read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if (isinstance(target, ast.Name) and target.id.startswith("_") and target.id.endswith("_MODELS")
                and isinstance(node.value, ast.Dict)):
            out[target.id] = {ast.literal_eval(k): ast.literal_eval(v)
                              for k, v in zip(node.value.keys, node.value.values) if k is not None}
    return out


def suffixes(config_dir: Path) -> list[str]:
    """The "generate" suffixes of vllm/config/model.py _SUFFIX_TO_DEFAULTS (ModelRegistry._normalize_arch)."""
    for node in ast.parse((config_dir / "model.py").read_text()).body:
        target = getattr(node, "target", None) or (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "_SUFFIX_TO_DEFAULTS":
            return [s for s, (runner, _) in ast.literal_eval(node.value) if runner == "generate"]
    raise SystemExit(f"_SUFFIX_TO_DEFAULTS not found in {config_dir / 'model.py'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", action="append", required=True, help="NAME=VERSION=PATH_TO_vllm_PACKAGE")
    args = parser.parse_args()
    lines = [
        "# Engine generations' model registries as data: the `architectures` names each can serve.",
        "# Written by scripts/engine_registry.py from vLLM's vllm/model_executor/models/registry.py (parsed,",
        "# not imported); read by commbench/traffic/registry.py. A name resolves as vLLM's",
        "# ModelRegistry.inspect_model_cls does: the config's `architectures` in order, each as written, else",
        "# with its generate suffix swapped (_normalize_arch over `generate_suffixes`). vLLM's fallback to",
        "# its Transformers modeling backend for a name in no table (model_impl=auto, needs the HF class",
        "# to support it) is not counted: its traffic is the HF model's tp_plan, which commbench does not trace.",
        "# Tables: generate (text generation and multimodal decoders), transformers_backend (names vLLM",
        "# maps to that backend), pooling, draft (speculative heads), removed (name = last vLLM version),",
        "# cannot_build (read by hand: commbench blocks a registered name's model file cannot build).",
    ]
    for spec in args.engine:
        name, version, root = spec.split("=", 2)
        root = Path(root)
        dicts = registry_dicts(root / "model_executor" / "models" / "registry.py")
        lines += ["", f"[engines.{name}]", f'vllm_version = "{version}"',
                  f'source = "https://github.com/vllm-project/vllm/blob/v{version}/vllm/model_executor/models/registry.py"',
                  f"generate_suffixes = {json.dumps(suffixes(root / 'config'))}"]
        seen = set()
        for group, names in GROUPS.items():
            entries = {}
            for dict_name in names:
                for arch, value in dicts.get(dict_name, {}).items():
                    if arch in seen and group != "removed":
                        continue
                    entries[arch] = value if isinstance(value, str) else value[0]
            if group != "removed":
                seen |= set(entries)
            lines += ["", f"[engines.{name}.{group}]"]
            lines += [f"{json.dumps(a)} = {json.dumps(m)}" for a, m in sorted(entries.items())]
        lines += ["", f"[engines.{name}.cannot_build]  # read by hand from the model files (scripts/engine_registry.py)"]
        lines += [f"{json.dumps(a)} = {{ blocks = {json.dumps(blocks)}, source = {json.dumps(src)} }}"
                  for a, (blocks, src) in sorted(CANNOT_BUILD.get(version, {}).items())]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
