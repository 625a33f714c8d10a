"""The package's module-level imports form no cycle, and every module imports on its own."""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def module_imports(path: Path, name: str) -> set[str]:
    """trice modules imported at module level by ``name`` (not inside functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in tree.body:  # top level only: imports inside functions are deliberate late imports
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(sub, ast.Import):
                found |= {a.name for a in sub.names if a.name.startswith("trice")}
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - sub.level + 1]
                    base = ".".join(parts + ([sub.module] if sub.module else []))
                if base.startswith("trice"):
                    found.add(base)
                    found |= {f"{base}.{a.name}" for a in sub.names}  # `from . import gym` imports a module
    return found


def graph() -> dict[str, set[str]]:
    modules = {}
    for path in (SRC / "trice").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    edges = {}
    for name, path in modules.items():
        deps = {d for d in module_imports(path, name) if d in modules and d != name}
        # importing a.b.c first imports the packages a and a.b
        edges[name] = deps | {d.rpartition(".")[0] for d in deps if d.rpartition(".")[0] in modules
                              and not name.startswith(d.rpartition(".")[0])}
    return edges


def test_no_import_cycle():
    edges = graph()
    assert "trice.tasks.registry" in edges and "trice.engine" in edges
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(edges[node]):
            if state.get(dep) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_every_module_imports_alone():
    names = sorted(graph())
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n    [sys.modules.pop(m) for m in list(sys.modules) if m.startswith('trice')]\n"
    proc = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_task_base_and_registry_import_no_family():
    """The registry is filled by the package importing the families, not by base/registry importing
    them back (the cycle there was: get_task imported the families, which import base)."""
    for name in ("base.py", "registry.py"):
        tree = ast.parse((SRC / "trice" / "tasks" / name).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.module for a in n.names}
        assert not imported & {"gym", "gsm8k", "bbh", "jsonl"}, (name, imported)
