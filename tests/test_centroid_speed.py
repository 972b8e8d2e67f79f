"""Fast windowed centroids: same results as the reference algorithm, bounded work.

``_reference_windowed_centroids`` is the original (pre-optimisation) implementation of
:func:`atd_dl.detect.centroid.windowed_centroids`, kept verbatim except for the optional
``cap`` on the window half-size, so the blocked, separable, active-set version can be
checked against it. No test here measures time.
"""

from __future__ import annotations

import numpy as np
import pytest
from _detect_helpers import calibrated_sim, disc_map, moffat_image, noisy

from atd_dl.detect import centroid, measure
from atd_dl.detect.centroid import windowed_centroids
from atd_dl.detect.postprocess import segment_sources


def _reference_windowed_centroids(
    image,
    x,
    y,
    fwhm,
    *,
    variance=None,
    bad=None,
    window_scale=None,
    iterations=30,
    tolerance=2e-4,
    max_shift=1.0,
    cap=None,
):
    """The original implementation (one full-size array per quantity, all sources in every
    iteration; window ``centroid.window_fwhm(fwhm)``, or ``window_scale * fwhm`` when
    given); ``cap`` limits the half-size like ``_MAX_WINDOW_HALF`` (None = no cap)."""
    x0 = np.asarray(x, float)
    y0 = np.asarray(y, float)
    n = x0.size
    if n == 0:
        empty = np.zeros(0)
        return empty, empty, empty, empty, np.zeros(0, bool)
    ny, nx = image.shape
    if window_scale is None:  # the window rule is shared; this checks the vectorisation
        sigma = centroid.window_fwhm(fwhm) / 2.3548
    else:
        sigma = window_scale * max(float(fwhm), 0.5) / 2.3548
    h = int(np.ceil(4.0 * sigma)) + 1
    r_max = 4.0 * sigma
    if cap is not None:
        h = min(h, cap)
        r_max = min(r_max, h - 1.0)
    oy, ox = np.mgrid[-h : h + 1, -h : h + 1]
    ox = ox.ravel().astype(float)
    oy = oy.ravel().astype(float)
    cx = np.rint(x0).astype(int)
    cy = np.rint(y0).astype(int)
    px = cx[:, None] + ox[None, :].astype(int)
    py = cy[:, None] + oy[None, :].astype(int)
    inside = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
    pxc = np.clip(px, 0, nx - 1)
    pyc = np.clip(py, 0, ny - 1)
    val = np.where(inside, np.nan_to_num(image[pyc, pxc].astype(float)), 0.0)
    if bad is not None:
        inside &= ~bad[pyc, pxc]
        val = np.where(inside, val, 0.0)
    fx = px.astype(float)
    fy = py.astype(float)
    xc, yc = x0.copy(), y0.copy()
    active = np.ones(n, bool)
    ok = np.ones(n, bool)
    r_max2 = r_max**2
    for _ in range(iterations):
        dx = fx - xc[:, None]
        dy = fy - yc[:, None]
        r2 = dx * dx + dy * dy
        w = np.where(inside & (r2 <= r_max2), np.exp(-0.5 * r2 / sigma**2), 0.0)
        wi = w * val
        s = wi.sum(axis=1)
        good = s > 0
        safe = np.where(good, s, 1.0)
        step_x = np.where(good, 2.0 * (wi * dx).sum(axis=1) / safe, 0.0)
        step_y = np.where(good, 2.0 * (wi * dy).sum(axis=1) / safe, 0.0)
        ok &= good
        step_x[~active] = 0.0
        step_y[~active] = 0.0
        xc += step_x
        yc += step_y
        active &= np.hypot(step_x, step_y) > tolerance
        if not active.any():
            break
    ok &= np.hypot(xc - x0, yc - y0) <= max_shift
    xc = np.where(ok, xc, x0)
    yc = np.where(ok, yc, y0)
    if variance is None:
        x_err = np.full(n, np.nan)
        y_err = np.full(n, np.nan)
    else:
        var = np.broadcast_to(np.asarray(variance, float), image.shape)
        vpix = np.where(inside, var[pyc, pxc], 0.0)
        dx = fx - xc[:, None]
        dy = fy - yc[:, None]
        r2 = dx * dx + dy * dy
        w = np.where(inside & (r2 <= r_max2), np.exp(-0.5 * r2 / sigma**2), 0.0)
        s = (w * val).sum(axis=1)
        safe = np.where(s > 0, s, 1.0)
        x_err = 2.0 * np.sqrt((w * w * vpix * dx * dx).sum(axis=1)) / safe
        y_err = 2.0 * np.sqrt((w * w * vpix * dy * dy).sum(axis=1)) / safe
    return xc, yc, x_err, y_err, ok


def _agreement(new, ref) -> dict[str, float]:
    x, y, xe, ye, ok = new
    rx, ry, rxe, rye, rok = ref
    d = np.hypot(x - rx, y - ry)
    both = ok & rok & np.isfinite(rxe) & (rxe > 0)
    rel = np.abs(xe[both] - rxe[both]) / rxe[both]
    return {
        "n_ok": int(ok.sum()),
        "n_ok_ref": int(rok.sum()),
        "ok_same": float(np.mean(ok == rok)),
        "within_001": float(np.mean(d <= 0.01)),
        "max_shift": float(d.max()),
        "err_rel_p995": float(np.quantile(rel, 0.995)) if rel.size else 0.0,
    }


@pytest.fixture(scope="module")
def dense_frame():
    """An 800^2 dense simulated frame with an oracle map (a few thousand sources) and the
    arguments ``segment_sources`` passes to ``windowed_centroids`` on it."""
    from atd_dl.sim import preset_config, simulate_field

    size = 800
    sim = simulate_field(preset_config("dense", size=size), seed=3)
    img, rms, sat = calibrated_sim(sim)
    stars = sim.truth[(sim.truth["kind"] == "star") & (sim.truth["snr_true"] >= 5.0)]
    prob = disc_map((size, size), np.asarray(stars["x"]), np.asarray(stars["y"]))
    calls: list[tuple[tuple, dict]] = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return windowed_centroids(*args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(measure, "windowed_centroids", spy)
    try:
        ex = segment_sources(
            prob, 0.5, image_e=img, mask=~np.isfinite(img), background_rms_e=rms, saturated=sat
        )
    finally:
        mp.undo()
    assert len(calls) == 1
    return ex, calls[0]


def test_fast_windowed_centroids_agree_with_reference_on_dense_frame(dense_frame):
    ex, (args, kwargs) = dense_frame
    assert len(args[1]) >= 2000  # a few thousand refined sources
    new = windowed_centroids(*args, **kwargs)
    ref = _reference_windowed_centroids(*args, **kwargs)
    a = _agreement(new, ref)
    assert a["n_ok"] == a["n_ok_ref"]  # same number of sources refined
    assert a["ok_same"] >= 0.999
    assert a["within_001"] >= 0.995
    assert a["err_rel_p995"] < 1e-3


def test_fast_windowed_centroids_match_reference_with_the_capped_window(dense_frame):
    # a huge FWHM: the window is cut at the cap in both, and the results still agree. With
    # a window 5x wider than this field's PSF most sources wander between neighbours and
    # never converge; after 30 steps of such a chaotic walk float32 rounding alone can
    # move one elsewhere, hence the allowance of a few sources.
    _, (args, kwargs) = dense_frame
    image, x, y, _ = args
    sel = slice(0, 1000)
    kw = dict(kwargs, variance=4.0)  # scalar variance path
    new = windowed_centroids(image, x[sel], y[sel], 9.0, **kw)
    ref = _reference_windowed_centroids(
        image, x[sel], y[sel], 9.0, cap=centroid._MAX_WINDOW_HALF, **kw
    )
    a = _agreement(new, ref)
    assert abs(a["n_ok"] - a["n_ok_ref"]) <= 3 and a["ok_same"] >= 0.995
    assert a["within_001"] >= 0.99
    assert a["err_rel_p995"] < 1e-3


def test_fast_windowed_centroids_match_reference_with_bad_pixels_and_edges():
    rng = np.random.default_rng(7)
    shape = (90, 120)
    xs = rng.uniform(-1.0, shape[1], 60)  # some windows hang over the edges
    ys = rng.uniform(-1.0, shape[0], 60)
    img = noisy(moffat_image(shape, xs, ys, rng.uniform(500, 20000, 60), fwhm=2.2), rng)
    bad = rng.random(shape) < 0.02
    img[rng.random(shape) < 0.005] = np.nan
    bad |= ~np.isfinite(img)
    start_x = xs + rng.normal(0, 0.4, xs.size)
    start_y = ys + rng.normal(0, 0.4, ys.size)
    var = np.full(shape, 25.0) + np.clip(np.nan_to_num(img), 0, None)
    args = (img, start_x, start_y, 2.2)
    new = windowed_centroids(*args, variance=var, bad=bad)
    ref = _reference_windowed_centroids(*args, variance=var, bad=bad)
    a = _agreement(new, ref)
    assert a["n_ok"] == a["n_ok_ref"] and a["ok_same"] == 1.0
    assert a["max_shift"] < 1e-3
    assert a["err_rel_p995"] < 1e-3


@pytest.mark.parametrize("fwhm", [1.5, 5.0, 40.0, 1e4])
def test_window_half_size_never_exceeds_the_cap(monkeypatch, fwhm):
    # a huge FWHM (PSF blown up by bright regions) must not blow up the box read per
    # source, and the work arrays per block stay bounded whatever the number of sources
    seen: list[tuple[int, int]] = []
    gather = centroid._gather_boxes

    def spy(shape, cx, cy, half):
        seen.append((half, len(cx)))
        return gather(shape, cx, cy, half)

    monkeypatch.setattr(centroid, "_gather_boxes", spy)
    img = moffat_image((80, 80), [40.2], [39.7], [1e4], fwhm=3.0)
    rng = np.random.default_rng(1)
    n = 5000
    x = 40.2 + rng.normal(0, 0.3, n)
    y = 39.7 + rng.normal(0, 0.3, n)
    out = windowed_centroids(img, x, y, fwhm, variance=1.0)
    assert all(np.all(np.isfinite(a)) for a in out[:4])
    sigma, half, r_max = centroid._window_geometry(fwhm)
    assert half <= centroid._MAX_WINDOW_HALF and r_max <= half - 1
    if 4 * sigma + 1 <= centroid._MAX_WINDOW_HALF:  # below the cap: the original window
        assert half == int(np.ceil(4 * sigma)) + 1 and r_max == pytest.approx(4 * sigma)
    assert seen and all(h == half for h, _ in seen)
    k = 2 * half + 1
    assert sum(m for _, m in seen) == n
    assert all(m * k * k <= max(centroid._BLOCK_PIXELS, k * k) for _, m in seen)


def test_converged_sources_stop_iterating(monkeypatch):
    # isolated stars converge in a few steps: the work follows the sources still moving,
    # not sources x iterations (a few never-converging sources must not keep all busy)
    calls: list[int] = []
    weights = centroid._window_weights

    def spy(du, dv, *args, **kwargs):
        calls.append(du.shape[1])
        return weights(du, dv, *args, **kwargs)

    monkeypatch.setattr(centroid, "_window_weights", spy)
    gx, gy = np.meshgrid(np.arange(20, 400, 20.0), np.arange(20, 400, 20.0))
    xs, ys = gx.ravel() + 0.3, gy.ravel() - 0.2
    img = moffat_image((420, 420), xs, ys, np.full(xs.size, 5e4), fwhm=2.0)
    img[200:260, 300:360] = 1e6  # a saturated block that pulls its neighbours along
    n = xs.size
    x, y, _, _, ok = windowed_centroids(img, xs + 0.3, ys - 0.3, 2.0, iterations=30)
    far = (np.clip(xs, 300, 359) - xs) ** 2 + (np.clip(ys, 200, 259) - ys) ** 2 > 15**2
    assert far.sum() > 0.9 * n
    assert ok[far].all() and np.all(np.hypot(x - xs, y - ys)[far] < 0.02)
    assert sum(calls) < 0.4 * 30 * n
