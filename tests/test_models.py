"""Networks, registry, FLOP counting and model folders (CPU, tiny widths)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from atd_dl.errors import InputError
from atd_dl.models import build_model, list_models, predict_proba
from atd_dl.models.dnanet import DNANet
from atd_dl.models.fem import FeatureEnhancementModule
from atd_dl.models.flops import count_flops, count_parameters, format_table, model_table
from atd_dl.models.model_folder import (
    default_model_dir,
    export_model_folder,
    load_checkpoint,
    load_checkpoint_weights,
    load_model_folder,
    save_model_folder,
)

MODELS = ["atd_unet", "dnanet", "starnet", "unet"]
# DNANet (dense nested U-Net) takes ~10x longer per step on CPU: slow tier
MODEL_PARAMS = [pytest.param(m, marks=pytest.mark.slow) if m == "dnanet" else m for m in MODELS]
TINY = {"atd_unet": 4, "unet": 4, "starnet": 4, "dnanet": 4}


def test_registry_lists_the_four_networks():
    assert list_models() == MODELS


def test_unknown_model_lists_valid_names():
    with pytest.raises(
        KeyError, match="unknown model 'vgg'; valid names: atd_unet, dnanet, starnet, unet"
    ):
        build_model("vgg")


def test_unknown_kwarg_is_a_type_error():
    with pytest.raises(TypeError, match="model 'unet'"):
        build_model("unet", widht=8)


def test_build_model_records_full_spec():
    net = build_model("atd_unet", base_width=8)
    assert net.model_spec == {
        "name": "atd_unet",
        "kwargs": {
            "in_channels": 1,
            "num_classes": 2,
            "base_width": 8,
            "depth": 3,
            "fem_dw_multiplier": 1,
            "widths": None,
        },
    }


def test_explicit_level_widths_set_depth_and_channels():
    net = build_model("atd_unet", in_channels=2, widths=[16, 16, 32, 48])
    assert net.widths == [16, 16, 32, 48] and net.depth == 3
    assert net.model_spec["kwargs"]["widths"] == [16, 16, 32, 48]
    out = net.eval()(torch.randn(1, 2, 40, 56))  # not a multiple of 8: padded and cropped
    assert out.shape == (1, 2, 40, 56)
    slim = sum(p.numel() for p in net.parameters())
    doubling = sum(
        p.numel() for p in build_model("atd_unet", in_channels=2, base_width=16).parameters()
    )
    assert slim < doubling / 4
    with pytest.raises(ValueError, match="widths"):
        build_model("atd_unet", widths=[16])


@pytest.mark.parametrize("num_classes", [1, 2])
@pytest.mark.parametrize("name", MODEL_PARAMS)
def test_forward_backward_shapes(name, num_classes):
    torch.manual_seed(0)
    net = build_model(name, base_width=TINY[name], num_classes=num_classes)
    x = torch.randn(2, 1, 64, 64)
    out = net.train()(x)
    outs = out if isinstance(out, list) else [out]
    assert all(o.shape == (2, num_classes, 64, 64) for o in outs)
    sum(o.square().mean() for o in outs).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    net.eval()
    with torch.no_grad():
        y = net(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, num_classes, 64, 64)
    prob = predict_proba(net, x)
    assert prob.shape == (2, 1, 64, 64)
    assert float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0


@pytest.mark.parametrize("name", MODEL_PARAMS)
def test_odd_sizes_and_three_channels(name):
    net = build_model(name, base_width=4, in_channels=3).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 3, 37, 50))
    assert y.shape == (1, 2, 37, 50)


def test_unet_widths_follow_the_paper():
    with torch.device("meta"):
        assert build_model("unet").widths == [64, 128, 256, 512]
        assert build_model("unet", depth=4).widths[-1] == 1024


@pytest.mark.slow
def test_dnanet_deep_supervision_list_in_training_only():
    net = DNANet(base_width=4, depth=3)
    x = torch.randn(1, 1, 32, 32)
    assert isinstance(net.train()(x), list) and len(net(x)) == 3
    assert isinstance(net.eval()(x), torch.Tensor)
    flat = DNANet(base_width=4, depth=3, deep_supervision=False).train()
    assert isinstance(flat(x), torch.Tensor)


def test_dnanet_default_size_matches_li_et_al():
    # Li et al. report about 4.7 M parameters for widths 16..256
    with torch.device("meta"):
        assert 4.5e6 < count_parameters(build_model("dnanet")) < 4.9e6


# ------------------------------------------------------------------ FEM
@pytest.mark.parametrize(
    ("cin", "cout", "mult", "expected"),
    [
        # 3×3 branch 9·1·8 + 16 = 88; 5×5 branch 25 + 8 + 16 = 49; fusion 2·8·8 + 16 = 144
        (1, 8, 1, 281),
        # 3×3 branch 9·3·4 + 8 = 116; 5×5 branch 25·6 + 6·4 + 8 = 182; fusion 2·4·4 + 8 = 40
        (3, 4, 2, 338),
    ],
)
def test_fem_parameter_count_by_hand(cin, cout, mult, expected):
    assert count_parameters(FeatureEnhancementModule(cin, cout, mult)) == expected


def test_fem_branches_structure():
    fem = FeatureEnhancementModule(3, 8)
    conv3 = fem.branch3[0]
    dw, pw = fem.branch5[0], fem.branch5[1]
    fuse = fem.fuse[0]
    assert conv3.kernel_size == (3, 3) and conv3.out_channels == 8
    assert dw.kernel_size == (5, 5) and dw.groups == 3 and dw.out_channels == 3
    assert pw.kernel_size == (1, 1) and pw.in_channels == 3 and pw.out_channels == 8
    assert fuse.kernel_size == (1, 1) and fuse.in_channels == 16 and fuse.out_channels == 8


def _centre_sensitivity(module: nn.Module, offset: int) -> float:
    """|d out[centre] / d in[centre + offset]| summed over channels."""
    x = torch.zeros(1, 1, 11, 11, requires_grad=True)
    y = module.eval()(x + 1.0)
    y[0, :, 5, 5].sum().backward()
    return float(x.grad[0, 0, 5, 5 + offset].abs())


def test_fem_sees_two_pixels_away_but_3x3_branch_does_not():
    torch.manual_seed(0)
    fem = FeatureEnhancementModule(1, 4)
    assert _centre_sensitivity(fem, 2) > 0
    assert _centre_sensitivity(fem.branch3, 2) == 0
    assert _centre_sensitivity(fem, 3) == 0  # 5×5 is the widest kernel


def test_atd_unet_adds_the_fem_difference_only():
    # first block: FEM(1→8) = 281 replaces conv 3×3 (1→8) + BN = 72 + 16 = 88
    diff = count_parameters(build_model("atd_unet", base_width=8)) - count_parameters(
        build_model("unet", base_width=8)
    )
    assert diff == 281 - 88


# ------------------------------------------------------------------ FLOPs
def test_flops_of_a_convolution_by_hand():
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    assert count_flops(conv, (1, 2, 16, 16)) == 2 * 2 * 3 * 9 * 16 * 16


def test_model_table_rows():
    rows = model_table(size=128)
    assert [r["name"] for r in rows] == MODELS
    assert all(r["params"] > 0 and r["gflops"] > 0 for r in rows)
    unet = next(r for r in rows if r["name"] == "unet")
    assert unet["kwargs"]["base_width"] == 64
    assert "| unet | 64 |" in format_table(rows, size=128)


# ------------------------------------------------------------------ model folders
@pytest.mark.parametrize("name", ["atd_unet", pytest.param("dnanet", marks=pytest.mark.slow)])
def test_save_load_model_folder_identical_outputs(tmp_path, name):
    torch.manual_seed(1)
    net = build_model(name, base_width=4, num_classes=1)
    # a few BN statistics that differ from the defaults
    net.train()(torch.randn(2, 1, 32, 32))
    net.eval()
    x = torch.randn(2, 1, 32, 32)
    out = save_model_folder(
        tmp_path / "m",
        net,
        threshold=0.37,
        fingerprint={"psf_fwhm_px": 2.5},
        metrics={"val": {"f1": 0.8}},
        fp16=False,
    )
    loaded, meta = load_model_folder(out)
    assert not loaded.training
    assert torch.equal(predict_proba(net, x), predict_proba(loaded, x))
    assert meta["name"] == name and meta["threshold"] == pytest.approx(0.37)
    assert meta["kwargs"]["num_classes"] == 1 and meta["input"] == "zscale8"
    assert meta["fingerprint"] == {"psf_fwhm_px": 2.5} and meta["metrics"]["val"]["f1"] == 0.8
    assert json.loads((out / "thresholds.json").read_text()) == {"prob_threshold": 0.37}
    assert (out / "MODEL_CARD.md").read_text().startswith("# ATD-DL model")


def test_fp16_folder_is_close_and_half_size(tmp_path):
    net = build_model("unet", base_width=8).eval()
    a = save_model_folder(tmp_path / "a", net, fp16=False)
    b = save_model_folder(tmp_path / "b", net, fp16=True)
    size_a = (a / "model.safetensors").stat().st_size
    size_b = (b / "model.safetensors").stat().st_size
    assert size_b < 0.6 * size_a
    loaded, _ = load_model_folder(b)
    x = torch.rand(1, 1, 32, 32)
    assert torch.allclose(predict_proba(net, x), predict_proba(loaded, x), atol=1e-2)
    assert next(loaded.parameters()).dtype == torch.float32


def test_load_model_folder_errors(tmp_path):
    with pytest.raises(InputError, match="model folder not found"):
        load_model_folder(tmp_path / "nope")
    out = save_model_folder(tmp_path / "m", build_model("starnet", base_width=4))
    (out / "thresholds.json").write_text("{}")
    with pytest.raises(InputError, match="thresholds.json: no numeric 'prob_threshold'"):
        load_model_folder(out)
    (out / "thresholds.json").unlink()
    with pytest.raises(InputError, match="thresholds.json: missing from model folder"):
        load_model_folder(out)
    out = save_model_folder(tmp_path / "m2", build_model("starnet", base_width=4))
    cfg = json.loads((out / "config.json").read_text())
    cfg["kwargs"]["base_width"] = 8
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="weights do not fit starnet"):
        load_model_folder(out)


class _Payload:
    """An arbitrary object: unpickling it would call Path.touch (a stand-in for malicious code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_with_pickled_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    net = build_model("starnet", base_width=4)
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": net.state_dict(), "extra": _Payload(marker)}, ckpt)
    with pytest.raises(
        InputError, match="evil.ckpt: refusing to load: checkpoint contains pickled objects"
    ):
        load_checkpoint_weights(ckpt)
    assert not marker.exists()


def test_export_from_lightning_style_checkpoint(tmp_path):
    torch.manual_seed(2)
    net = build_model("atd_unet", base_width=4).eval()
    ckpt = tmp_path / "last.ckpt"
    torch.save(
        {
            "epoch": 3,
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": {"model_spec": net.model_spec, "compile": False},
        },
        ckpt,
    )
    assert set(load_checkpoint(ckpt)) == {"epoch", "state_dict", "hyper_parameters"}
    out = export_model_folder(ckpt, tmp_path / "folder", 0.6, fp16=False)
    loaded, meta = load_model_folder(out)
    x = torch.rand(1, 1, 32, 32)
    assert torch.equal(predict_proba(net, x), predict_proba(loaded, x))
    assert meta["threshold"] == pytest.approx(0.6)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(InputError, match="checkpoint not found"):
        load_checkpoint_weights(tmp_path / "none.ckpt")


def test_default_model_dir():
    assert default_model_dir().parts[-3:] == ("atd_dl", "weights", "default")


def test_models_cli_lists_every_network(capsys):
    from atd_dl.cli import main

    assert main(["models", "--size", "64", "--base-width", "4"]) == 0
    out = capsys.readouterr().out
    assert "GFLOPs / 64²" in out
    assert all(f"| {name} | 4 |" in out for name in MODELS)
