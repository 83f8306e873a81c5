"""The house's layers: every import (module level or inside a function) points down, and no two
modules import each other, directly or through others. Read from the source with ``ast``."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fewshot"

# Bottom to top: a module may import its own layer and the layers below it, never one above.
LAYERS = ["base", "data", "models", "features", "protocol", "training", "merging", "methods", "run",
          "report", "notebooks", "world", "cli"]
PRIVATE = {"fewshot", "fewshot._clip_compat", "fewshot._origin"}  # the package's import-time setup

# Known upward imports, each to be removed by the redesign (#24); the test fails when one is
# fixed and still listed, so this list only shrinks.
KNOWN_UPWARD = {
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        if "assets" in p.parts:
            continue
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """The suite's modules that ``name`` imports anywhere in its source."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{name}: relative import; the house imports absolutely"
            targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for t in targets:
            while t not in modules and "." in t:
                t = t.rsplit(".", 1)[0]
            if t.startswith("fewshot.") and t in modules and t != name and not name.startswith(t + "."):
                found.add(t)
    return found


def _layer(name: str) -> int:
    if name in PRIVATE or name == "fewshot.__main__":
        return -1 if name != "fewshot.__main__" else len(LAYERS) - 1
    return LAYERS.index(name.split(".")[1])


def _graph():
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_every_module_belongs_to_a_layer():
    for m in _modules():
        if m not in PRIVATE and m != "fewshot.__main__":
            assert m.split(".")[1] in LAYERS, f"{m} is in no layer: put it in one of {LAYERS}"


def test_imports_point_down_the_layers():
    upward = {(m, d) for m, deps in _graph().items() for d in deps
              if _layer(d) > _layer(m) and not (m in PRIVATE and d in PRIVATE)}
    assert upward == set(KNOWN_UPWARD), (
        f"new upward imports: {sorted(upward - set(KNOWN_UPWARD))}; "
        f"fixed (remove from KNOWN_UPWARD): {sorted(set(KNOWN_UPWARD) - upward)}")


def test_no_import_cycles():
    graph, state, cycles = _graph(), {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph[m]):
            if d.startswith(m + ".") or m.startswith(d + "."):
                continue  # a package and its own submodules
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    known = {tuple(c) for c in KNOWN_CYCLES}
    assert {tuple(c) for c in cycles} == known, f"import cycles: {cycles}"


KNOWN_CYCLES = [
]


def test_the_test_sees_an_upward_import(tmp_path):
    """The check can fail: a base module that imports a report module is caught."""
    (tmp_path / "fewshot" / "base").mkdir(parents=True)
    (tmp_path / "fewshot" / "report").mkdir()
    for f in ("__init__.py", "base/__init__.py", "report/__init__.py", "report/figures.py"):
        (tmp_path / "fewshot" / f).write_text("")
    (tmp_path / "fewshot" / "base" / "errors.py").write_text("def f():\n    from fewshot.report import figures\n")
    mods = {"fewshot.base.errors": tmp_path / "fewshot/base/errors.py", "fewshot.report.figures": tmp_path}
    deps = _imports("fewshot.base.errors", tmp_path / "fewshot/base/errors.py", mods)
    assert deps == {"fewshot.report.figures"} and _layer("fewshot.report.figures") > _layer("fewshot.base.errors")


def test_every_module_opens_with_the_line_that_says_its_job():
    missing = [m for m, p in _modules().items() if not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]
    assert not missing, f"modules without a docstring: {missing}"
