"""Which engine generation can serve a model: the config's `architectures` against each generation's
vLLM model registry, kept as data in model_traces/engine_registry.toml (written from vLLM's own
vllm/model_executor/models/registry.py by scripts/engine_registry.py).

A name resolves as vLLM's ModelRegistry.inspect_model_cls does (0.11.0 and current alike): the
config's `architectures` in order, each first as written, then with its generate suffix swapped
(`_normalize_arch`: FooForConditionalGeneration -> FooForCausalLM, ...). The first name found decides:
  generate              a vLLM model file serves it: traced
  transformers_backend  vLLM's Transformers modeling backend serves it (TP from the HF model's
                        tp_plan, not a vLLM model file): traced, with a warning
  pooling / draft       an embedding / classifier model or a speculative head: nothing to decode, refused
A registered name may still be unable to build some of the config's layers in a version (the table
`cannot_build`, read by hand: 0.11.0's nemotron_h.py has no MoE layer); that generation does not serve it.
A config the chosen generation cannot serve is refused in one line naming the architecture and the
generation that can; when the generation was not chosen (no --engine), the trace switches to the one
that can and says so. vLLM's own fallback to the Transformers backend for a name in no table is not
counted (it depends on the HF class; its traffic is not what commbench traces).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from commbench import CommbenchError
from commbench.data import data_dir, read_toml

SERVED_GROUPS = ("generate", "transformers_backend")
UNSERVED_GROUPS = {"pooling": "a pooling (embedding / classification) model", "draft": "a speculative-decoding head"}


@dataclass(frozen=True)
class Resolution:
    """How one engine generation resolves a config's `architectures`."""
    engine: str
    architecture: str  # the config's name that resolved
    resolved_as: str  # the registry name it resolved to (suffix swapped or not)
    group: str  # generate, transformers_backend, pooling, draft
    module: str  # the registry's module for it (vllm/model_executor/models/<module>.py)

    @property
    def serves(self) -> bool:
        return self.group in SERVED_GROUPS


@lru_cache(maxsize=1)
def engine_registry() -> dict:
    """{engine: {"vllm_version", "source", "generate_suffixes", "generate": {arch: module}, ...}}."""
    data = read_toml(data_dir("model_traces") / "engine_registry.toml", "engine registry")
    return data["engines"]


def describe(engine: str) -> str:
    """'vllm-v1 (vLLM 0.11.0)'."""
    return f"{engine} (vLLM {engine_registry()[engine]['vllm_version']})"


def _lookup(reg: dict, name: str) -> tuple[str, str] | None:
    for group in (*SERVED_GROUPS, *UNSERVED_GROUPS):
        module = reg.get(group, {}).get(name)
        if module is not None:
            return group, module
    return None


@lru_cache(maxsize=512)
def resolve(architectures: tuple[str, ...], engine: str) -> Resolution | None:
    """The first of `architectures` the generation's registry knows (as written, else suffix-swapped)."""
    reg = engine_registry()[engine]
    suffixes = reg["generate_suffixes"]
    for arch in architectures:
        names = [arch]
        matched = next((s for s in suffixes if arch.endswith(s)), None)
        if matched:
            names += [arch[: -len(matched)] + s for s in suffixes if s != matched]
        for name in names:
            found = _lookup(reg, name)
            if found:
                return Resolution(engine, arch, name, *found)
    return None


def _missing_blocks(r: Resolution, blocks: frozenset) -> list[str]:
    """The config's blocks the resolved model file cannot build in that version."""
    limit = engine_registry()[r.engine].get("cannot_build", {}).get(r.resolved_as)
    return sorted(blocks & set(limit["blocks"])) if limit else []


def served_by(architectures: tuple[str, ...], blocks: frozenset = frozenset()) -> list[str] | None:
    """The engine generations that can serve the model (None: the config names no architectures).

    blocks: the block kinds of the config's layers (ModelCard.layer_blocks), checked against `cannot_build`.
    """
    if not architectures:
        return None
    return [e for e in engine_registry()
            if (r := resolve(tuple(architectures), e)) and r.serves and not _missing_blocks(r, blocks)]


def _names(architectures: tuple[str, ...]) -> str:
    return repr(architectures[0]) if len(architectures) == 1 else f"architectures {list(architectures)}"


def _reason(architectures: tuple[str, ...], engine: str, blocks: frozenset) -> str:
    """Why `engine` cannot serve them, in a few words naming the generation and its vLLM version."""
    r = resolve(architectures, engine)
    version = engine_registry()[engine]["vllm_version"]
    if r is not None and not r.serves:
        return f"only {UNSERVED_GROUPS[r.group]} in {engine}'s model registry (vLLM {version})"
    if r is not None and (missing := _missing_blocks(r, blocks)):
        return f"{engine}'s {r.module}.py (vLLM {version}) cannot build its {', '.join(missing)} layers"
    removed = engine_registry()[engine].get("removed", {})
    last = next((removed[a] for a in architectures if a in removed), None)
    return f"not in {engine}'s model registry (vLLM {version}" + (f"; dropped after {last})" if last else ")")


def choose_engine(architectures: tuple[str, ...], engine: str, explicit: bool,
                  blocks: frozenset = frozenset()) -> tuple[str, tuple[str, ...]]:
    """(the engine generation to trace with, warnings). Raises a one-line CommbenchError when none can serve.

    explicit: the user named `engine`; else the trace may switch to a generation that serves the model.
    blocks: the block kinds of the config's layers (for `cannot_build`).
    """
    registry = engine_registry()
    if engine not in registry:
        raise CommbenchError(f"unknown engine {engine!r}; valid: {', '.join(registry)}")
    architectures = tuple(architectures or ())
    if not architectures:
        return engine, ("the config names no `architectures`: which engine generation can serve it is not checked",)
    serving = served_by(architectures, blocks)
    notes: tuple[str, ...] = ()
    if engine not in serving:
        names = _names(architectures)
        if not serving:
            reasons = "; ".join(_reason(architectures, e, blocks) for e in registry)
            raise CommbenchError(f"{names}: no engine generation can serve it ({reasons}); "
                                 f"commbench traces what vLLM can load")
        other = serving[0]
        if explicit:
            raise CommbenchError(f"{names}: {_reason(architectures, engine, blocks)}; {describe(other)} serves it: "
                                 f"use --engine {other}")
        notes = (f"{names}: {_reason(architectures, engine, blocks)}; traced as {describe(other)}, which serves it",)
        engine = other
    r = resolve(architectures, engine)
    if r.group == "transformers_backend":
        notes += (f"{describe(engine)} serves {r.architecture!r} through its Transformers modeling backend "
                  f"(TP from the Hugging Face model's tp_plan), not a vLLM model file; traced with commbench's "
                  f"family rules, which follow the vLLM model files",)
    return engine, notes


def pricing_notes(architectures: tuple[str, ...], engine: str, blocks: frozenset = frozenset(),
                  command: str = "predict") -> tuple[str, ...]:
    """For the commands that model a model's serving as `engine` (the default generation) runs it
    (predict, compute, explain): trace's one-line refusal when no generation serves the config
    (choose_engine raises it), else its notes, with trace's switch note said as what the command does:
    it cannot switch generations, so it names the one that serves the model and what it priced."""
    chosen, notes = choose_engine(architectures, engine, explicit=False, blocks=blocks)
    if chosen == engine:
        return notes
    names = _names(tuple(architectures))
    switch = (f"{names}: {_reason(tuple(architectures), engine, blocks)}; {describe(chosen)} serves it: {command} "
              f"models it as {describe(engine)} would run it (commbench trace --engine {chosen} shows {chosen}'s "
              f"collectives)")
    return (switch, *notes[1:])
