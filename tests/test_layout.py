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


def export_cells(notebook: Path) -> list[int]:
    "The length in lines of each exported cell of a notebook."
    import json

    cells = json.loads(notebook.read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return [len(s.splitlines()) for s in sources if s.startswith("#| export")]


def test_cells_hold_one_idea():
    "No exported cell over 60 lines, and a mean under 30 lines per exported cell in every chapter."
    too_long, dense = [], []
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        sizes = export_cells(nb)
        too_long += [f"{nb.name}: a {n}-line cell" for n in sizes if n > 60]
        if sizes and sum(sizes) / len(sizes) >= 30:
            dense.append(f"{nb.name}: {sum(sizes) / len(sizes):.1f} lines per exported cell")
    assert not too_long and not dense, "split these at their definitions, a sentence before each: " + "; ".join(too_long + dense)


def test_modules_stay_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "workbench").glob("*.py") if p.name != "_modidx.py"}
    assert not {n: s for n, s in sizes.items() if s > 600}, sizes
    assert sizes["pipeline.py"] < 400, sizes["pipeline.py"]


def test_chapters_come_after_what_they_build_on():
    "A chapter's number is above the numbers of the chapters whose modules its module imports: read in order, it only uses what came before."
    import re

    chapter = {}
    for p in (ROOT / "workbench").glob("*.py"):
        if found := re.search(r"File to edit: \.\./nbs/(\d+)([a-z]?)_\w+\.ipynb", p.read_text()):
            chapter[p.stem] = (int(found.group(1)), found.group(2))  # 16 < 16a < 17
    late = [f"{m} ({chapter[m]}) imports {d} ({chapter[d]})" for m, deps in module_graph().items() if m in chapter
            for d in deps if d in chapter and chapter[d] >= chapter[m]]
    assert len(chapter) >= 20 and not late, late


def test_chapter_numbers_are_unique():
    "Each chapter has a number of its own (a letter after it counts: 16a is not 16), so the numbers give one reading order."
    import collections
    import re

    numbers = collections.Counter(re.match(r"(\d+[a-z]?)_", p.name).group(1) for p in (ROOT / "nbs").glob("[0-9]*.ipynb"))
    assert not [n for n, count in numbers.items() if count > 1], numbers
