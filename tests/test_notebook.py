"""notebooks/quickstart.ipynb runs top to bottom without a cell error (nbclient),
with a few training steps and golden cases so it takes seconds."""
import os

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")


def test_quickstart_runs(tmp_path, monkeypatch):
    nb = nbformat.read(os.path.join(NOTEBOOKS, "quickstart.ipynb"), as_version=4)
    monkeypatch.setenv("TINYLM_QUICKSTART_MAX_STEPS", "3")
    monkeypatch.setenv("TINYLM_QUICKSTART_GOLDEN_CASES", "8")
    # The kernel must import this checkout's tinylm, as the notebook's first cell expects.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [os.path.dirname(NOTEBOOKS),
                                                                   os.environ.get("PYTHONPATH")])))
    work = tmp_path / "notebooks"
    work.mkdir()
    os.symlink(os.path.join(os.path.dirname(NOTEBOOKS), "datasets"), tmp_path / "datasets")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "golden cases pass" in outputs and "largest logit difference" in outputs
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for cell in nb.cells for o in cell.get("outputs", []))
    assert (work / "out" / "quickstart" / "merged" / "model.safetensors").exists()
