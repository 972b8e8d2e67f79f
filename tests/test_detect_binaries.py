"""The optional visual-binary step of detection adds its column and flag bit."""

from __future__ import annotations

import numpy as np
from _detect_helpers import MATCHED_META, MatchedFilterNet

from atd_dl.binaries.model import load_binary_model
from atd_dl.detect.batch import detect_files
from atd_dl.detect.catalog_io import OutputConfig
from atd_dl.detect.flags import SourceFlag
from atd_dl.detect.pipeline import DetectConfig, Detector
from atd_dl.sim import preset_config, simulate_field, write_field


def test_detect_with_binaries_adds_probability_column_and_flag(tmp_path):
    sim = simulate_field(preset_config("paper", size=256), seed=7)
    paths = write_field(sim, tmp_path / "sim")
    detector = Detector(
        MatchedFilterNet(), dict(MATCHED_META), DetectConfig(tile=256, overlap=64, device="cpu")
    )
    detector.binary_model = load_binary_model(None)
    summary = detect_files(
        [paths["frame"]], detector, OutputConfig(tmp_path / "det"), progress=False
    )
    assert summary.n_ok == 1 and summary.n_detections > 0
    from atd_dl.detect.catalog_io import read_catalog

    cat = read_catalog(tmp_path / "det" / f"{paths['frame'].name.removesuffix('.fits')}.cat.fits")
    assert {"p_binary", "binary"} <= set(cat.colnames)
    p = np.asarray(cat["p_binary"], float)
    assert np.all((p >= 0) & (p <= 1))
    flagged = (np.asarray(cat["flags"]) & int(SourceFlag.BINARY)) > 0
    assert np.array_equal(flagged, np.asarray(cat["binary"], bool))
