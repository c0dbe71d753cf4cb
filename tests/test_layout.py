"""The package's import graph: no cycle, and the flow's lower steps never import the higher ones."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "commbench"

# Each module's layer in the flow (README "Layout"); a module may import its own layer and lower ones.
LAYERS = {
    0: {"__init__", "data", "collectives", "results", "measure.__init__", "measure.launcher", "measure.timing",
        "measure.backends.__init__", "measure.backends.torch_dist", "measure.backends.mpi", "measure.backends.cupy_nccl"},
    1: {"importers", "logs.__init__", "logs.common", "logs.nccl_tests_text", "logs.nccl_tests_json", "logs.osu", "traffic.__init__", "traffic.model_card", "traffic.plan", "traffic.workload", "traffic.patterns",
        "traffic.registry", "fabric.links", "predict.__init__", "predict.recipes", "predict.published", "predict.vllm_bench"},
    2: {"traffic.trace", "fabric.__init__", "fabric.trust", "predict.hardware", "measure.world"},
    3: {"measure.sweep", "measure.replay", "fabric.validate", "fabric.compare", "predict.serving", "predict.whatif"},
    4: {"predict.compute", "fabric.infer", "predict.explain", "predict.accuracy", "predict.mechanisms"},
    5: {"report.__init__"},
    6: {"cli.__init__", "cli.base", "cli.compare", "cli.traffic", "cli.measure", "cli.fabric", "cli.predict", "cli.report",
        "__main__"},
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
                folder = PACKAGE / target.replace(".", "/") if target else PACKAGE
                # from package import x, y: the submodules among x, y, else the package itself
                subs = {f"{target}.{a.name}".lstrip(".") for a in node.names if (folder / f"{a.name}.py").exists()}
                deps |= subs
                if target and not subs:
                    deps.add(f"{target}.__init__" if (folder / "__init__.py").exists() else target)
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


def test_every_backend_offers_the_protocol():
    """Each backend class defines every method of commbench.measure.backends.Backend (instance attributes
    rank, world_size, name, needs_sync and the bound all_reduce / barrier are set in __init__)."""
    from commbench.measure.backends import Backend
    from commbench.measure.backends.cupy_nccl import CupyNcclBackend
    from commbench.measure.backends.mpi import MpiBackend
    from commbench.measure.backends.torch_dist import TorchBackend

    instance_attrs = {"name", "rank", "world_size", "needs_sync", "all_reduce", "barrier"}
    methods = {n for n in dir(Backend) if not n.startswith("_")} - instance_attrs
    for cls in (TorchBackend, MpiBackend, CupyNcclBackend):
        assert methods <= set(dir(cls)), (cls.__name__, sorted(methods - set(dir(cls))))


LONG_FUNCTION_REASON = "# long:"  # a function over 60 lines says why on its def line's next comment


def test_no_function_over_60_lines_without_a_reason():
    long = []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(source))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                body = "\n".join(source[node.lineno - 1:node.end_lineno])
                if length > 60 and LONG_FUNCTION_REASON not in body:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({length} lines)")
    assert long == []
