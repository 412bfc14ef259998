"""The package's shape: layers that only import downwards, no import cycle, and a `--help` that loads no torch."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "datagen"
# Each sub-package may import its own modules and those of lower layers only (data flows upwards).
LAYERS = {"common": 0, "data": 1, "model": 2, "classify": 3, "store": 3, "train": 4, "generate": 5, "eval": 6,
          "tools": 6, "bench": 7, "cli": 8}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    """datagen modules imported anywhere in the file (functions included), except under `if TYPE_CHECKING:`."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "datagen")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "datagen":
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from datagen.x import module`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    modules = _modules()
    return {name for name in found if name in modules}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_belongs_to_a_layer_and_each_layer_says_its_job_in_one_line():
    for module, path in _modules().items():
        if module in ("datagen", "datagen.__main__"):
            continue
        assert _layer(module) is not None, f"{module} sits outside the layers {sorted(LAYERS)}"
    for layer in LAYERS:
        init = (PACKAGE / layer / "__init__.py").read_text()
        tree = ast.parse(init)
        doc = ast.get_docstring(tree)
        assert doc and "\n" not in doc and len(tree.body) == 1, f"datagen/{layer}/__init__.py: one docstring line, nothing else"


def test_no_module_imports_from_a_layer_above_it():
    wrong = []
    for module, path in _modules().items():
        mine = _layer(module)
        for imported in _imports(path):
            theirs = _layer(imported)
            if mine is None or theirs is None or theirs == mine:
                continue
            if LAYERS[theirs] >= LAYERS[mine]:
                wrong.append(f"{module} ({mine}) imports {imported} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_only_the_cli_and_bench_import_the_training_loop():
    users = {m for m, path in _modules().items() if "datagen.train.loop" in _imports(path)}
    assert users and all(_layer(m) in ("cli", "bench") for m in users), users


def test_the_root_package_loads_only_the_common_layer():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    top = [n.module for n in tree.body if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("datagen")]
    assert all(_layer(m) == "common" for m in top), top


def test_no_import_cycle():
    graph = {m: _imports(p) - {m} for m, p in _modules().items()}
    # a package's __init__ is imported on the way to any of its modules: count it as a plain node
    state: dict[str, int] = {}

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                walk(nxt, trail + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])


def test_help_loads_no_torch():
    """--help must answer fast: the CLI modules import torch (and other heavy libraries) only inside their commands."""
    commands = [["--help"], ["train", "--help"], ["augment", "--help"], ["evaluate", "--help"], ["demo", "--help"],
                ["bench", "train", "--help"], ["embed", "--help"], ["inspect", "--help"], ["recipes", "--help"]]
    script = ("import sys\nfrom datagen.cli.main import app\n"
              f"for args in {commands!r}:\n"
              "    try:\n        app(args, standalone_mode=False)\n    except SystemExit:\n        pass\n"
              "heavy = [m for m in ('torch', 'torchvision', 'h5py', 'sklearn', 'matplotlib', 'scipy') if m in sys.modules]\n"
              "print('HEAVY', heavy)\n"
              "import datagen.store.writers, datagen.store.inspect\n"  # inspect and the writers need no torch either
              "print('STORE TORCH', 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout[-300:]
    assert "STORE TORCH False" in done.stdout
    assert done.stdout.count("Usage") == len(commands)
