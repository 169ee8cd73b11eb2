"""Commands that only read the spec or the registries stay light: no torch, transformers or datasets.

Each command runs in a fresh interpreter, so modules imported by other tests cannot hide an import.
"""

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


def test_full_validate_still_checks_data_and_models():
    """Without --spec-only, validate loads tokenizers and data on purpose (the pre-run check)."""
    proc = subprocess.run([sys.executable, "-m", "w2s", "validate", "experiments/quickstart.yaml"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "runnable here" in proc.stdout
