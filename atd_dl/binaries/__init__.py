"""Visual-binary stamp classifier (Gezer et al.; SPEC §9).

- :mod:`~atd_dl.binaries.stamps`: ``cut_stamps``, ``normalize_stamps``, ``binary_labels``,
  stamp-set and user-CSV reading/writing, :class:`StampGeometry`.
- :mod:`~atd_dl.binaries.synth`: simulated labelled stamps (``simulate_binary_stamps``).
- :mod:`~atd_dl.binaries.splits`: seeded, stratified, group-aware 70/15/15 splits.
- :mod:`~atd_dl.binaries.model`: ResNet34 adapter and model folders (needs torch).
- :mod:`~atd_dl.binaries.classify`: ``classify_detections`` for the detection pipeline.
- :mod:`~atd_dl.binaries.report`: classification report and confusion matrix.

Lightning training lives in :mod:`atd_dl.lit.binary`; nothing here imports Lightning or Hydra.
"""
