"""The package's import graph: no cycle, and the flow's lower steps never import the higher ones."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "commbench"

# Each module's layer in the flow (README "Layout"); a module may import its own layer and lower ones.
LAYERS = {
    0: {"__init__", "data", "collectives", "timing", "results", "launcher", "backends", "backends.__init__",
        "backends.torch_dist", "backends.mpi", "backends.cupy_nccl"},
    1: {"model_card", "plan", "workload", "patterns", "links", "recipes", "published"},
    2: {"trace", "fabric", "hardware", "world"},
    3: {"sweep", "replay", "validate", "serving"},
    4: {"compute", "calibrate", "explain", "accuracy"},
    5: {"report"},
    6: {"cli", "__main__"},
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return ".".join(rel.parts)


def _imports() -> dict[str, set[str]]:
    """commbench module -> the commbench modules it imports anywhere (function-level included)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("commbench"):
                target = node.module.removeprefix("commbench").lstrip(".")
                if not target:  # from commbench import x, y: submodules or package attributes
                    deps |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists()}
                else:
                    deps.add(target)
            elif isinstance(node, ast.Import):
                deps |= {a.name.removeprefix("commbench.") for a in node.names if a.name.startswith("commbench.")}
        graph[name] = {d for d in deps if d != name}
    return graph


def _layer(module: str) -> int:
    for layer, names in LAYERS.items():
        if module in names:
            return layer
    raise AssertionError(f"module {module} has no layer in tests/test_layout.py: place it in the flow")


def test_no_import_cycle():
    graph = _imports()
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("module", sorted(_imports()))
def test_no_upward_import(module):
    for dep in _imports()[module]:
        assert _layer(dep) <= _layer(module), f"{module} (layer {_layer(module)}) imports {dep} (layer {_layer(dep)})"
