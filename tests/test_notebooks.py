"""Execute the notebooks with nbclient (outputs are not written back)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def _execute(name: str, env: dict[str, str], timeout: int = 600) -> None:
    nb = nbformat.read(NB_DIR / name, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment
    try:
        client = nbclient.NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(NB_DIR)}},
        )
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.parametrize("name", ["quickstart.ipynb", "paper_figures.ipynb"])
def test_notebook_outputs_are_stripped(name: str) -> None:
    nb = json.loads((NB_DIR / name).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [], f"{name}: outputs not stripped"
            assert cell.get("execution_count") is None


def test_example_summary_is_valid() -> None:
    from atd_dl.evaluate.report import load_summary

    s = load_summary(NB_DIR / "data" / "example_summary.json")
    assert len(s["methods"]) >= 2
    for m in s["methods"].values():
        assert m["best"]["paper"]["f1"] > 0


@pytest.mark.slow
def test_paper_figures_notebook_runs(tmp_path: Path) -> None:
    _execute("paper_figures.ipynb", {"ATD_DL_FIG_DIR": str(tmp_path), "MPLBACKEND": "Agg"})
    pngs = {p.name for p in tmp_path.glob("*.png")}
    assert {
        "fig11_paper_rule.png",
        "fig12_top3.png",
        "fig13_recall_snr.png",
        "pr_curves.png",
    } <= pngs


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path: Path) -> None:
    _execute(
        "quickstart.ipynb",
        {"ATD_DL_WORK": str(tmp_path), "ATD_DL_QUICK_EPOCHS": "2", "MPLBACKEND": "Agg"},
        timeout=900,
    )
    assert (tmp_path / "eval" / "metrics.json").is_file()
