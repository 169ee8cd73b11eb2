"""Commands that only read the spec or the registries stay light: no torch, transformers or datasets
(and `validate` on the quickstart: its data is generated and its checks need none of them).

Each command runs in a fresh interpreter, so modules imported by other tests cannot hide an import.
"""

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
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_full_validate_of_the_quickstart_imports_no_heavy_library(tmp_path):
    """The whole pre-run check (generated data, tokenizers, batches, precision) without torch or
    transformers, once this machine's precision probe is remembered (the first command probes)."""
    from w2s import precision

    if precision._may_have_gpu():
        pytest.skip("a GPU device node: deciding the precision asks torch.cuda, by design")
    env = {**os.environ, "W2S_CACHE_DIR": str(tmp_path)}
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    subprocess.run([sys.executable, "-c", "from w2s.precision import auto_precision; auto_precision()"],
                   env=env, check=True, cwd=REPO)
    argv = ["validate", "experiments/quickstart.yaml"]
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "valid (4 stages), runnable here" in proc.stdout
