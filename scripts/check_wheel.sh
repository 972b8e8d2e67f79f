#!/usr/bin/env bash
# Wheel check: build the wheel from a clean copy of the sources, install it into a fresh
# virtual environment, and from a folder outside the checkout run
#   atd-dl simulate -> atd-dl detect   (with the [train]/[hpc]/[baselines] packages hidden)
#   atd-dl prep -> atd-dl train experiment=quick (one tiny epoch)
# so that missing package data (configs, weights), checkout-relative paths and
# module-level imports of optional extras fail here rather than for users.
#
# The fresh environment has no pip and downloads nothing: it reuses the installed
# third-party packages of PYTHON's environment (default .venv/bin/python) through a path
# line in a .pth file. Such a line adds the folder to sys.path but does not run the
# .pth files inside it, so the editable install of the checkout (a .pth import hook) stays
# invisible; the script checks that `import atd_dl` fails before the wheel is installed
# and resolves to the installed wheel afterwards.
#
# Usage: scripts/check_wheel.sh            (PYTHON=... to use another interpreter)
# Keeps its temporary folder when KEEP=1.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/atd-wheel-check.XXXXXX")"
if [ "${KEEP:-0}" != "1" ]; then trap 'rm -rf "$TMP"' EXIT; fi
start=$(date +%s)
step() { echo "== wheel-check [$(( $(date +%s) - start ))s] $*"; }

step "copy the sources to $TMP/src"
mkdir -p "$TMP/src"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # tracked and untracked-but-not-ignored files: what a commit of the checkout would hold
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 -I{} sh -c '[ -e "{}" ] || [ -L "{}" ] && printf "%s\0" "{}"' \
        | tar --null -T - -cf -) | tar -xf - -C "$TMP/src"
else
    tar -C "$REPO" --exclude=.venv --exclude=.git --exclude='*.egg-info' --exclude=build \
        --exclude=__pycache__ -cf - . | tar -xf - -C "$TMP/src"
fi

step "build the wheel"
env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "$PYTHON" -m pip wheel -q --no-deps \
    --no-build-isolation --no-index -w "$TMP/dist" "$TMP/src"
WHEEL="$(ls "$TMP"/dist/atd_dl-*.whl)"
"$PYTHON" - "$WHEEL" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ["atd_dl/configs/train.yaml", "atd_dl/configs/experiment/quick.yaml",
        "atd_dl/configs/module/segmentation.yaml", "atd_dl/eval_configs/quick.yaml",
        "atd_dl/weights/default/config.json", "atd_dl/api.py"]
missing = [n for n in need if n not in names]
assert not missing, f"wheel lacks {missing}"
assert not any(n.startswith(("tests/", "benchmarks/", "notebooks/")) for n in names)
print(f"   {sys.argv[1].rsplit('/', 1)[-1]}: {len(names)} files")
EOF

step "fresh environment (no pip, dependencies from $PYTHON's site-packages)"
"$PYTHON" -m venv --without-pip "$TMP/venv"
VPY="$TMP/venv/bin/python"
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$PYTHON" -c 'import sysconfig; p = sysconfig.get_paths(); print(p["purelib"]); print(p["platlib"])' \
    | sort -u > "$SITE/atd_wheel_check_deps.pth"
if (cd "$TMP" && "$VPY" -c 'import atd_dl' 2>/dev/null); then
    echo "wheel-check: atd_dl is importable before the wheel is installed (checkout leaks)" >&2
    exit 1
fi
env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "$PYTHON" -m pip --python "$VPY" install -q \
    --no-deps --no-index "$WHEEL"

mkdir -p "$TMP/work"
cd "$TMP/work"
export ATD_DL_ROOT="$TMP/work" MPLBACKEND=Agg PYTHONDONTWRITEBYTECODE=1
"$VPY" - "$SITE" <<'EOF'
import sys
import atd_dl
assert atd_dl.__file__.startswith(sys.argv[1]), f"atd_dl from {atd_dl.__file__}, not the wheel"
print(f"   atd_dl {atd_dl.__version__} from {atd_dl.__file__}")
EOF

step "atd-dl simulate + detect (optional extras hidden)"
# core only: lightning, hydra, omegaconf, tensorboard, optuna, submitit, sep unimportable
"$VPY" - <<'EOF'
import importlib.abc
import sys

OPTIONAL = {"lightning", "pytorch_lightning", "hydra", "hydra_plugins", "omegaconf",
            "tensorboard", "optuna", "submitit", "sep"}


class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in OPTIONAL:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden)", name=name)
        return None


sys.meta_path.insert(0, Hide())
from pathlib import Path

from astropy.table import Table

from atd_dl.cli import main

assert main(["simulate", "--out", "sims", "--size", "384", "--seed", "7", "-q",
             "--no-progress"]) == 0
assert main(["detect", "sims/frames", "--out", "det", "--device", "cpu", "--no-progress"]) == 0
cats = sorted(Path("det").glob("*.cat.ecsv"))
assert len(cats) == 1 and len(Table.read(cats[0])) > 20, cats
# the API, on the same frame
import atd_dl

image, truth, header = atd_dl.simulate(seed=7, size=384)
found = atd_dl.detect(image, header=header, device="cpu")
fixed = atd_dl.detect(image, header=header, device="cpu", threshold=0.75)
# the per-frame rule cuts this paper-density frame low: a better F1 than the fixed cut
score, ceiling = atd_dl.evaluate(found, truth), atd_dl.evaluate(fixed, truth)
assert score["precision"] > 0.8 and score["f1"] > ceiling["f1"], (score, ceiling)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in OPTIONAL)
assert not leaked, leaked
print(f"   {len(found)} sources; no optional package imported")
EOF

step "atd-dl prep + train experiment=quick (1 epoch, 2 batches)"
"$TMP/venv/bin/atd-dl" prep sims/frames --catalogs sims/catalogs --out ds --subfield-size 96 \
    --no-overlays -q
"$TMP/venv/bin/atd-dl" train experiment=quick data.data_dir="$TMP/work/ds" \
    trainer.max_epochs=1 trainer.limit_train_batches=2 trainer.limit_val_batches=1 \
    data.batch_size=2 data.crop_size=64 hydra.run.dir=run \
    > train.log 2>&1 || { tail -40 train.log >&2; exit 1; }
ls run/model/config.json >/dev/null || { tail -40 train.log >&2; exit 1; }

step "OK"
