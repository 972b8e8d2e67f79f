"""Static checks of the detection core's shape (``ast`` only, nothing imported): no long
functions, and the stage modules import each other in one direction (no cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DETECT = Path(__file__).resolve().parents[1] / "atd_dl" / "detect"
MAX_LINES = 100  # per function or method, docstring included


def _functions(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        (node.end_lineno - node.lineno + 1, f"{path.name}:{node.lineno} {node.name}")
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno
    ]


def _module_imports(path: Path) -> set[str]:
    """Modules imported by the top-level statements of ``path`` (``if TYPE_CHECKING``
    blocks excluded; imports inside functions are lazy and not counted)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_detect_package_is_found() -> None:
    names = {p.name for p in DETECT.glob("*.py")}
    assert {"pipeline.py", "batch.py", "frame.py", "catalog_io.py"} <= names


def test_no_function_in_detect_exceeds_the_limit() -> None:
    rows = [row for p in sorted(DETECT.glob("*.py")) for row in _functions(p)]
    assert rows
    long = sorted((row for row in rows if row[0] > MAX_LINES), reverse=True)
    assert not long, f"functions over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("pipeline.py", "atd_dl.detect.batch"),  # batch imports pipeline
        ("catalog_io.py", "atd_dl.detect.pipeline"),  # pipeline delegates writing
        ("catalog_io.py", "atd_dl.detect.batch"),
        ("frame.py", "atd_dl.detect.pipeline"),  # the records import no stage
        ("frame.py", "atd_dl.detect.catalog_io"),
        ("frame.py", "atd_dl.detect.batch"),
    ],
)
def test_stage_imports_run_one_way(module: str, forbidden: str) -> None:
    imported = _module_imports(DETECT / module)
    assert forbidden not in imported
    assert not any(m.startswith(forbidden + ".") for m in imported)


def test_batch_sits_on_top_of_pipeline_and_catalog_io() -> None:
    imported = _module_imports(DETECT / "batch.py")
    assert "atd_dl.detect.pipeline" in imported
    assert "atd_dl.detect.catalog_io" in imported
    assert "atd_dl.detect.frame" in _module_imports(DETECT / "catalog_io.py")


def test_moved_names_still_import_from_pipeline() -> None:
    """Old imports keep working: the batch names resolve lazily, the rest are re-exported."""
    from atd_dl.detect import batch, catalog_io, frame, pipeline
    from atd_dl.detect.pipeline import RunSummary, detect_files  # noqa: F401  (PEP 562)

    for name in batch.__all__ + ["_now", "_problem"]:
        assert getattr(pipeline, name) is getattr(batch, name)
    assert pipeline.OutputConfig is catalog_io.OutputConfig
    assert pipeline.OUTPUT_SUFFIXES is catalog_io.OUTPUT_SUFFIXES
    for name in ("PreparedFrame", "PreparedMosaic", "FrameResult", "frame_stem"):
        assert getattr(pipeline, name) is getattr(frame, name)
    with pytest.raises(AttributeError):
        _ = pipeline.no_such_name
