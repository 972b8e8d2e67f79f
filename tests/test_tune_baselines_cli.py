"""``atd-dl tune-baselines`` picks parameters on a small simulated validation set."""

from __future__ import annotations

import json

import pytest

from atd_dl.cli import main
from atd_dl.sim import preset_config, simulate_run


@pytest.mark.slow
def test_tune_baselines_writes_best_parameters(tmp_path, capsys):
    simulate_run(preset_config("paper", size=256), 3, tmp_path / "val", 1, progress=False)
    rc = main(
        ["tune-baselines", str(tmp_path / "val"), "--baselines", "sep", "--sweep", "paper"]
        + ["--out", str(tmp_path / "tuned")]
    )
    assert rc == 0
    tuned = json.loads((tmp_path / "tuned" / "tuned.json").read_text())
    best = tuned["sep"]["best"]
    assert 0.5 < best["f1"] <= 1.0
    assert "threshold" in tuned["sep"]["params"] and "filter_fwhm" in tuned["sep"]["params"]
    assert "--baseline-param sep.filter_fwhm=" in capsys.readouterr().out
