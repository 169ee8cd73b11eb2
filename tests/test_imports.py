"""Commands that only read the spec or the registries stay light: no torch, transformers or datasets
(and `validate` on the quickstart: its data is generated and its checks need none of them).

Each command runs in a fresh interpreter, so modules imported by other tests cannot hide an import.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets")

LIGHT_COMMANDS = [
    ["validate", "--spec-only", "experiments/quickstart.yaml"],
    ["list", "losses"],
    ["list", "datasets"],
    ["list", "models"],
    ["list", "kinds"],
    ["schema"],
]

PROBE = """
import sys
from w2s.cli import main
code = main({argv!r})
assert code == 0, code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
assert not heavy, heavy
"""


@pytest.mark.parametrize("argv", LIGHT_COMMANDS, ids=" ".join)
def test_light_command_imports_no_heavy_library(argv):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


PROBES = """
from w2s.experiment.environment import resolve
from w2s.spec import load_spec
resolve(load_spec("experiments/quickstart.yaml"))
"""


def test_full_validate_of_the_quickstart_imports_no_heavy_library(tmp_path):
    """The whole pre-run check (generated data, tokenizers, batches, precision, attention kernel)
    without torch or transformers, once this machine's probes are remembered (the first command probes)."""
    from w2s.training import precision

    if precision._may_have_gpu():
        pytest.skip("a GPU device node: deciding the precision asks torch.cuda, by design")
    env = {**os.environ, "W2S_CACHE_DIR": str(tmp_path)}
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    subprocess.run(
        [sys.executable, "-c", PROBES],
        env=env,
        check=True,
        cwd=REPO,
    )
    argv = ["validate", "experiments/quickstart.yaml"]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)], capture_output=True, text=True, cwd=REPO, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "valid (4 stages), runnable here" in proc.stdout


def _w2s_imports(path: Path) -> set[str]:
    """Every w2s module `path` imports: at the top, inside a function (lazy) or under TYPE_CHECKING.
    Importing a.b.c also runs package a.b's __init__, so that counts as an import of a.b too."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return {".".join(n.split(".")[:i]) for n in names if n.startswith("w2s") for i in range(2, n.count(".") + 2)}


def _import_graph() -> dict[str, set[str]]:
    """Module -> the w2s modules it imports. A module importing the package it lives in (for a
    sibling) is not counted: its __init__ is the package's own."""
    modules = {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (REPO / "w2s").rglob("*.py")
    }
    return {
        m: {d for d in _w2s_imports(p) if d in modules and d != m and not m.startswith(d + ".")}
        for m, p in modules.items()
    }


def test_no_import_cycle_between_modules():
    """No chain of imports, lazy and TYPE_CHECKING ones included, leads from a module back to itself."""
    graph = _import_graph()
    state = {}  # module -> "open" while on the current path, "done" after

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                pytest.fail("import cycle: " + " -> ".join(path[path.index(dep) :] + [dep]))
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert len(graph) > 60 and graph["w2s.spec.datasets"] >= {"w2s.data.registry"}  # the graph was read


# The packages in the order data flows, lowest first (docs/development.md draws the same layers): a
# unit imports only units of lower layers (and its own modules); units of one layer do not import each
# other. `w2s` itself (the package face, `__version__`) is left out: every import of w2s runs it.
LAYERS = [
    ["w2s.errors", "w2s.machine_cache", "w2s.jsonfiles", "w2s.examples"],
    ["w2s.data", "w2s.models"],
    ["w2s.spec"],
    ["w2s.training", "w2s.vision"],
    ["w2s.experiment"],
    ["w2s.scoring"],
    ["w2s.pipeline", "w2s.report"],
    ["w2s.api"],
    ["w2s.plots", "w2s.cli"],
    ["w2s.__main__"],
]


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_every_import_runs_down_the_layers():
    """Lazy and TYPE_CHECKING imports too: an import that runs up or across a layer is a design
    change, and this list is where it is made."""
    layer = {unit: i for i, units in enumerate(LAYERS) for unit in units}
    graph = _import_graph()
    assert {_unit(m) for m in graph if m != "w2s"} == set(layer), "a package or top-level module without a layer"
    wrong = sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        for d in deps
        if m != "w2s" and d != "w2s" and _unit(m) != _unit(d) and layer[_unit(d)] >= layer[_unit(m)]
    )
    assert not wrong, "imports that do not run down a layer:\n" + "\n".join(wrong)
