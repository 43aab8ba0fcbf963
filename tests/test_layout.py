"""How the package is laid out: modules depend one way (no import cycle, counting imports inside functions too)."""
import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imports_of(path: Path) -> set:
    "The workbench modules that the module at `path` imports, anywhere in it."
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:  # from .train import ...
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import train
                found.update(a.name for a in node.names)
            elif node.module and node.module.startswith("workbench."):
                found.add(node.module.split(".")[1])
            elif node.module == "workbench":
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("workbench."))
    return found - {path.stem}


def module_graph() -> dict:
    modules = {p.stem: p for p in (ROOT / "workbench").glob("*.py") if not p.stem.startswith("_")}
    return {name: imports_of(path) & set(modules) for name, path in modules.items()}


def test_modules_import_one_way():
    graph = module_graph()
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as e:
        raise AssertionError(f"workbench modules import each other in a cycle: {' -> '.join(e.args[1])}") from None
    assert order[0] == "core", order  # the one module that needs no other
