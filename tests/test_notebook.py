"""The example notebook is committed with its outputs, computed on the real run folder committed beside
it; executed again here (nbclient, a real Python kernel), every cell gives the same numbers, tables and
number of figures as the committed ones."""

import copy
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "docs" / "notebooks"
NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*(?:[eE][-+]?\d+)?|inf|nan)")


def texts(cell) -> list[str]:
    """A cell's printed and displayed text (tables as HTML and as plain text), in order."""
    out = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            out.append(output.text)
        elif "data" in output:
            out += [output.data[kind] for kind in ("text/html", "text/plain") if kind in output.data]
    return out


def numbers(text: str) -> list[float]:
    text = re.sub(r"<[^>]+>", " ", text)  # tags hold no results, only markup
    text = re.sub(r"0x[0-9a-f]+", " ", text)  # object addresses
    return [float(n.replace(",", "")) for n in NUMBER.findall(text)]


def images(cell) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def test_the_committed_notebook_has_its_outputs_and_executing_it_gives_them_again():
    committed = nbformat.read(NOTEBOOKS / "analysis.ipynb", as_version=4)
    code = [cell for cell in committed.cells if cell.cell_type == "code"]
    assert all(cell.get("outputs") for cell in code), "committed without outputs: execute it (docs/development.md)"
    assert sum(map(images, code)) >= 5  # Figure 3, PGR, losses, agreement, misfit
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]

    fresh = copy.deepcopy(committed)
    for cell in fresh.cells:
        cell.outputs = [] if cell.cell_type == "code" else cell.get("outputs")
    NotebookClient(
        fresh, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    ran = [cell for cell in fresh.cells if cell.cell_type == "code"]
    for i, (old, new) in enumerate(zip(code, ran)):
        assert images(new) == images(old), f"cell {i}: {images(new)} figures, committed {images(old)}"
        before, after = numbers("\n".join(texts(old))), numbers("\n".join(texts(new)))
        assert len(after) == len(before), f"cell {i}: {len(after)} numbers, committed {len(before)}"
        assert after == pytest.approx(before, rel=1e-9, abs=1e-12, nan_ok=True), f"cell {i} differs"
