"""The package's import graph: no cycle, and the flow's lower steps never import the higher ones."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "commbench"

# The packages in the flow's order (README "Layout"): a module may import its own package and the
# packages before it, never one after it. The base is commbench's top-level modules plus `logs`
# (reading other tools' logs into tables, re-exported by `importers`); `__main__` is the CLI's.
ORDER = ("base", "traffic", "measure", "fabric", "predict", "report", "cli")
BASE_PACKAGES = {"logs"}


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


def _package(module: str) -> str:
    """The flow package a module belongs to."""
    if module == "__main__":
        return "cli"
    head, _, rest = module.partition(".")
    if not rest or head in BASE_PACKAGES:
        return "base"
    assert head in ORDER, f"package {head} has no place in the flow: add it to ORDER in tests/test_layout.py"
    return head


def _rank(module: str) -> int:
    return ORDER.index(_package(module))


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
        assert _rank(dep) <= _rank(module), f"{module} ({_package(module)}) imports {dep} ({_package(dep)})"


def test_every_subpackage_has_its_place():
    """Each folder of commbench is in ORDER or part of the base: a new package is placed, not ignored."""
    folders = {p.parent.relative_to(PACKAGE).parts[0] for p in PACKAGE.glob("*/__init__.py")}
    assert folders <= set(ORDER) | BASE_PACKAGES, sorted(folders - set(ORDER) - BASE_PACKAGES)


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


MODULE_LINES = 400  # a module over this holds more than one job, unless its first lines say why


def test_no_module_over_400_lines_without_a_reason():
    """Each module of commbench has one job: over 400 lines, its docstring's first lines give the reason
    (naming the bound, e.g. '(A little over 400 lines: one reader for every 2.x layout ...)')."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        if len(lines) > MODULE_LINES and not any(f"{MODULE_LINES} lines" in line for line in lines[:10]):
            long.append(f"{path.relative_to(PACKAGE)} ({len(lines)} lines)")
    assert long == []
