"""The package's imports, counted honestly, form no cycle and go one way between packages.

Every import counts: at module level, inside functions, under ``TYPE_CHECKING``, and the module paths a
dynamic table imports by name (the method registry, the aliases of old module paths). Importing ``a.b.c``
also imports the packages ``a`` and ``a.b``. The one-way order of the packages is the one
docs/ARCHITECTURE.md draws.
"""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# Lowest first: a module may import from its own package or from a package before it, never after.
ORDER = ["errors", "choices", "tools", "runtime", "tasks", "prompts", "estimators", "modeling", "generation",
         "evaluation", "methods", "config", "enumerable", "artifacts", "training", "export", "experiments", "cli",
         "_aliases", "trice"]


def modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "trice").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every trice module ``name`` imports, anywhere in its file."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    dynamic = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from . import gym` imports a module
        elif isinstance(node, ast.Attribute) and node.attr == "import_module":
            dynamic = True
    if dynamic:  # a table of module paths imported by name (trice.methods.registry, trice._aliases)
        found |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                  and n.value.startswith("trice.") and n.value in known}
    return {m for m in found if m in known}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    edges = {}
    for name, path in mods.items():
        deps = imports(path, name, known) - {name}
        for dep in list(deps):  # importing a.b.c first imports the packages a and a.b
            parts = dep.split(".")
            deps |= {".".join(parts[:i]) for i in range(1, len(parts)) if not name.startswith(".".join(parts[:i]))}
        # (a module's own ancestor packages are being imported already: `from . import x` adds no edge)
        edges[name] = {d for d in deps if d in known and d != name and not name.startswith(d + ".")}
    return edges


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "trice"


def test_no_import_cycle():
    edges = graph()
    assert "trice.tasks.registry" in edges and "trice.generation.slot_engine" in edges
    assert "trice.methods.trice" in edges["trice.methods.registry"]  # the registry's table counts
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
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} edges (function-level, TYPE_CHECKING and "
          "dynamic imports counted), no cycle")


def test_packages_import_one_way():
    wrong = [f"{a} -> {b}" for a, deps in graph().items() for b in deps
             if ORDER.index(package(b)) > ORDER.index(package(a))]
    assert set(package(m) for m in modules()) <= set(ORDER)
    assert not wrong, "imports against the package order: " + ", ".join(sorted(wrong))


def test_every_module_imports_alone():
    names = sorted(graph())
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n    [sys.modules.pop(m) for m in list(sys.modules) if m.startswith('trice')]\n"
    proc = subprocess.run([sys.executable, "-c", code, *[n for n in names if not n.endswith("__main__")]],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_import_trice_and_its_config_load_no_torch():
    code = "import sys, trice; from trice import TrainConfig; TrainConfig().validate(); import trice.cli.flags; " \
           "print(sorted(m for m in ('torch', 'transformers', 'peft', 'numpy') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
    assert not [line for line in proc.stderr.splitlines() if line.rstrip().endswith(("| torch", "| transformers"))]


def test_the_old_module_paths_still_import_with_a_warning():
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "try:\n    import trice.model\nexcept DeprecationWarning as w:\n    print(w)\n"
            "warnings.simplefilter('ignore')\nimport trice.model, trice.modeling, trice.sampler\n"
            "from trice.scorer import score\nfrom trice.memory import Memory\n"
            "print(trice.model is trice.modeling, score.__module__, Memory.__module__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:2] == ["trice.model is now trice.modeling",
                                           "True trice.modeling.scoring trice.methods.memory"]


def test_task_base_and_registry_import_no_family():
    """The registry is filled by the package importing the families, not by base/registry importing
    them back (the cycle there was: get_task imported the families, which import base)."""
    for name in ("base.py", "registry.py"):
        tree = ast.parse((SRC / "trice" / "tasks" / name).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.module for a in n.names}
        assert not imported & {"gym", "gsm8k", "bbh", "jsonl"}, (name, imported)
