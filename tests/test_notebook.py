"""The example notebook runs, top to bottom, on the run folder committed beside it (nbclient, a real
Python kernel) and draws the paper's figure; its tables are the API's numbers."""

import html
from pathlib import Path

import nbformat
from nbclient import NotebookClient

import w2s

NOTEBOOKS = Path(__file__).resolve().parents[1] / "docs" / "notebooks"


def test_the_analysis_notebook_runs_and_draws_the_figure():
    notebook = nbformat.read(NOTEBOOKS / "analysis.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # committed cleared
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 2  # accuracy_vs_size and pgr_vs_size
    tables = [html.unescape(out["data"]["text/html"]) for out in outputs if "text/html" in out.get("data", {})]
    summary = w2s.pgr(w2s.results(NOTEBOOKS / "runs" / "tiny-ladder", echo=lambda *a: None))
    assert len(summary) == 6 and len(tables) == 3  # 3 pairs x 2 losses; results, pgr, pgr by loss
    for _, row in summary.iterrows():  # the notebook's PGR table shows the API's rows
        assert f"{row['chain']}" in tables[1] and f"{row['ceiling_accuracy']:.6f}" in tables[1]
