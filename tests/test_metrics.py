"""inrlib.metrics against independent computations: numpy PSNR, pytorch_msssim, set-based IoU."""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import pytorch_msssim
import torch
from skimage import data, transform

from inrlib.metrics import MS_SSIM_WEIGHTS, _ms_ssim_levels, iou, ms_ssim, ms_ssim_scales, psnr, psnr_from_mse

_ssim_module = importlib.import_module("pytorch_msssim.ssim")


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _photo(side: int) -> torch.Tensor:
    """The skimage astronaut as a (1, 3, side, side) float32 batch in [0, 1]."""
    img = transform.resize(data.astronaut(), (side, side), anti_aliasing=True)
    return torch.tensor(img, dtype=torch.float32).permute(2, 0, 1)[None]


def _noisy(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g, dtype=x.dtype)).clamp(0, 1)


# ----------------------------------------------------------------------------- PSNR
def test_psnr_matches_numpy_per_image_and_mean():
    rng = np.random.default_rng(0)
    a = rng.random((3, 2, 8, 9))
    b = np.clip(a + rng.normal(0, [0.01, 0.05, 0.2], (2, 8, 9, 3)).transpose(3, 0, 1, 2), 0, 1)
    expected = [10 * np.log10(1.0 / np.mean((a[i] - b[i]) ** 2)) for i in range(3)]
    per = psnr(torch.tensor(a), torch.tensor(b), reduction="none")
    assert per.shape == (3,)
    np.testing.assert_allclose(per.numpy(), expected, rtol=1e-12)
    assert float(psnr(torch.tensor(a), torch.tensor(b))) == pytest.approx(np.mean(expected), rel=1e-12)
    # other shapes are one signal (a coordinate network's (N, C) output)
    flat_a, flat_b = a.reshape(-1, 3), b.reshape(-1, 3)
    one = psnr(torch.tensor(flat_a, dtype=torch.float32), torch.tensor(flat_b, dtype=torch.float32))
    assert one.dim() == 0
    assert float(one) == pytest.approx(10 * np.log10(1 / np.mean((flat_a - flat_b) ** 2)), rel=1e-5)


def test_psnr_data_range_and_perfect_reconstruction():
    x = _photo(32)
    y = _noisy(x, 0.05)
    assert float(psnr(x * 255, y * 255, data_range=255)) == pytest.approx(float(psnr(x, y)), rel=1e-6)
    assert math.isinf(float(psnr(x, x))) and float(psnr(x, x)) > 0
    both = torch.cat([x, y]), torch.cat([x, x])
    per = psnr(*both, reduction="none")
    assert math.isinf(float(per[0])) and math.isfinite(float(per[1]))
    assert float(psnr_from_mse(0.01)) == pytest.approx(20.0)
    assert float(psnr_from_mse(0.01 * 255 ** 2, data_range=255)) == pytest.approx(20.0)


@pytest.mark.parametrize("call, match", [
    (lambda: psnr(torch.zeros(5, 1), torch.zeros(5)), "same shape"),
    (lambda: psnr(torch.zeros(4), torch.zeros(4), reduction="sum"), "reduction"),
    (lambda: psnr(torch.zeros(4), torch.zeros(4), data_range=0), "data_range"),
    (lambda: psnr(torch.tensor([0.0, float("nan")]), torch.zeros(2)), "non-finite"),
    (lambda: psnr(torch.zeros(0), torch.zeros(0)), "empty"),
    (lambda: psnr_from_mse(-1.0), "mse"),
])
def test_psnr_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- MS-SSIM
def test_ms_ssim_equals_pytorch_msssim_at_256():
    x = torch.cat([_photo(256), _photo(256).flip(-1)])
    y = _noisy(x, 0.08)
    ref = pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False)
    ours, scales = ms_ssim(x, y, reduction="none", return_scales=True)
    assert scales == 5
    assert torch.equal(ours, ref)
    assert float(ms_ssim(x, y)) == pytest.approx(float(ref.mean()), abs=1e-7)
    # the loop used for smaller images is the same algorithm: bitwise equal at five scales too
    loop = _ms_ssim_levels(x, y, data_range=1.0, weights=MS_SSIM_WEIGHTS, win_size=11, win_sigma=1.5)
    assert torch.equal(loop, ref)


def test_ms_ssim_identical_is_one_and_monotone_in_noise():
    for side in (256, 100, 64, 32):
        x = _photo(side)
        assert float(ms_ssim(x, x)) == pytest.approx(1.0, abs=1e-6)
        values = [float(ms_ssim(x, _noisy(x, s))) for s in (0.01, 0.03, 0.1, 0.3)]
        assert all(a > b for a, b in zip(values, values[1:])), (side, values)
        assert all(0.0 < v <= 1.0 for v in values), (side, values)


@pytest.mark.parametrize("side, scales", [(32, 2), (64, 3), (100, 4)])
def test_ms_ssim_small_images_match_renormalized_reference(side, scales):
    """Fewer scales, standard weights renormalized: checked with pytorch_msssim's per-scale terms."""
    x = _photo(side)
    y = _noisy(x, 0.1, seed=side)
    value, used = ms_ssim(x, y, return_scales=True)
    assert used == scales == ms_ssim_scales(side, side)[0]
    assert 0.0 < float(value) <= 1.0
    w = np.array(MS_SSIM_WEIGHTS[:scales]) / sum(MS_SSIM_WEIGHTS[:scales])
    win = _ssim_module._fspecial_gauss_1d(11, 1.5).repeat(3, 1, 1, 1)
    xs, ys, terms = x.double(), y.double(), []
    for level in range(scales):
        s, cs = _ssim_module._ssim(xs, ys, data_range=1.0, win=win, size_average=False)
        terms.append((torch.relu(cs) if level < scales - 1 else torch.relu(s)).double())
        pad = [d % 2 for d in xs.shape[2:]]
        xs = torch.nn.functional.avg_pool2d(xs, 2, padding=pad)
        ys = torch.nn.functional.avg_pool2d(ys, 2, padding=pad)
    expected = torch.stack([t ** wi for t, wi in zip(terms, w)]).prod(0).mean()
    assert float(value) == pytest.approx(float(expected), abs=2e-6)


def test_ms_ssim_one_scale_and_shrunk_window_equal_plain_ssim():
    for side, win in ((16, 11), (7, 7), (4, 3)):
        x = _photo(32)[..., :side, :side].contiguous()
        y = _noisy(x, 0.1, seed=side)
        assert ms_ssim_scales(side, side) == (1, win, 1.5 * win / 11)
        ref = pytorch_msssim.ssim(x, y, data_range=1.0, win_size=win, win_sigma=1.5 * win / 11,
                                  nonnegative_ssim=True)
        value, scales = ms_ssim(x, y, return_scales=True)
        assert scales == 1
        assert float(value) == pytest.approx(float(ref), abs=1e-6)


def test_ms_ssim_scales_rule():
    assert ms_ssim_scales(512, 161)[0] == 5
    assert ms_ssim_scales(160, 160)[0] == 4      # pytorch_msssim needs > 160 for five
    assert ms_ssim_scales(81, 300)[0] == 4
    assert ms_ssim_scales(80, 80)[0] == 3
    assert ms_ssim_scales(11, 11) == (1, 11, 1.5)
    assert ms_ssim_scales(10, 40)[:2] == (1, 9)
    assert ms_ssim_scales(2, 2)[:2] == (1, 1)
    # a 1 x 1 image still gets a value: the luminance term of SSIM
    value = ms_ssim(torch.full((1, 1, 1, 1), 0.5), torch.full((1, 1, 1, 1), 0.4))
    c1 = 0.01 ** 2
    assert float(value) == pytest.approx((2 * 0.5 * 0.4 + c1) / (0.25 + 0.16 + c1), rel=1e-6)
    with pytest.raises(ValueError, match="odd"):
        ms_ssim_scales(64, 64, win_size=4)


def test_ms_ssim_uint8_and_gradient():
    x = _photo(48)
    y = _noisy(x, 0.05)
    x8, y8 = (x * 255).round().to(torch.uint8), (y * 255).round().to(torch.uint8)
    a = ms_ssim(x8, y8, data_range=255)
    b = ms_ssim(x8.float() / 255, y8.float() / 255)
    assert float(a) == pytest.approx(float(b), abs=1e-5)
    p = y.clone().requires_grad_(True)
    (1 - ms_ssim(p, x)).backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("a, b, match", [
    (torch.rand(3, 32, 32), torch.rand(3, 32, 32), "4-D"),
    (torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 31), "same shape"),
    (torch.rand(1, 1, 32, 32), torch.full((1, 1, 32, 32), float("inf")), "non-finite"),
])
def test_ms_ssim_errors(a, b, match):
    with pytest.raises(ValueError, match=match):
        ms_ssim(a, b)


# ----------------------------------------------------------------------------- IoU
def _set_iou(p: np.ndarray, t: np.ndarray, threshold: float) -> float:
    pred = {i for i, v in enumerate(p.ravel()) if v >= threshold}
    true = {i for i, v in enumerate(t.ravel()) if v == 1}
    union = pred | true
    return 1.0 if not union else len(pred & true) / len(union)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_iou_matches_set_computation(threshold):
    rng = np.random.default_rng(1)
    p = rng.random((50, 40))
    t = (rng.random((50, 40)) < 0.4).astype(np.float32)
    got = iou(torch.tensor(p), torch.tensor(t), threshold=threshold)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(_set_iou(p, t, threshold), abs=1e-15)
    # logits: the same decision through sigmoid
    z = torch.logit(torch.tensor(p))
    assert float(iou(z, torch.tensor(t), threshold=threshold, logits=True)) == pytest.approx(float(got), abs=1e-15)
    # booleans for either argument
    assert float(iou(torch.tensor(p) >= threshold, torch.tensor(t).bool())) == pytest.approx(float(got), abs=1e-15)


def test_iou_edge_cases():
    assert float(iou(torch.zeros(10), torch.zeros(10))) == 1.0                     # empty union
    assert float(iou(torch.tensor([0.5, 0.2]), torch.tensor([1, 0]))) == 1.0       # p == threshold is inside
    assert float(iou(torch.tensor([1.0, 0.0]), torch.tensor([0, 1]))) == 0.0       # disjoint
    assert float(iou(torch.tensor([0.9, 0.9, 0.1]), torch.tensor([1, 0, 1]))) == pytest.approx(1 / 3)


@pytest.mark.parametrize("a, b, kwargs, match", [
    (torch.rand(8, 1), torch.ones(8), {}, "same shape"),
    (torch.tensor([2.0, -1.0]), torch.tensor([1, 0]), {}, "logits=True"),
    (torch.rand(4), torch.tensor([0.5, 1, 0, 1]), {}, "labels 0"),
    (torch.rand(4), torch.ones(4), {"threshold": 1.0}, "between 0 and 1"),
])
def test_iou_errors(a, b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        iou(a, b, **kwargs)


def _naive_ms_ssim(x: np.ndarray, y: np.ndarray, scales: int = 5) -> float:
    """MS-SSIM written out from Wang et al. (2003) with NumPy: separable 11-tap Gaussian (sigma 1.5)
    'valid' filtering, K1 = 0.01, K2 = 0.03, data range 1, 2 x 2 average pooling, the standard weights
    (renormalized when fewer scales), negative terms clamped at 0. x, y: (C, H, W)."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()

    def filt(img):                           # (C, H, W) -> valid filtered
        rows = np.stack([[np.convolve(r, g, mode="valid") for r in ch] for ch in img])
        return np.stack([[np.convolve(col, g, mode="valid") for col in ch.T] for ch in rows]).transpose(0, 2, 1)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    w = np.array(MS_SSIM_WEIGHTS[:scales]) / sum(MS_SSIM_WEIGHTS[:scales])
    value = 1.0
    for level in range(scales):
        mx, my = filt(x), filt(y)
        sxx, syy, sxy = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        ssim = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1) * cs
        term = np.maximum(ssim.mean(axis=(1, 2)) if level == scales - 1 else cs.mean(axis=(1, 2)), 0)
        value = value * term ** w[level]
        if level < scales - 1:                # 2 x 2 means (even sides here)
            assert x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0
            pool = lambda a: a.reshape(a.shape[0], a.shape[1] // 2, 2, a.shape[2] // 2, 2).mean(axis=(2, 4))  # noqa: E731
            x, y = pool(x), pool(y)
    return float(value.mean())


def test_ms_ssim_against_a_from_scratch_implementation():
    """Independent of pytorch_msssim: the formula of Wang et al. in NumPy, at 5 scales (256 px)."""
    x = _photo(256)[:1]
    y = _noisy(x, 0.08)
    ours = float(ms_ssim(x, y))
    ref = _naive_ms_ssim(x[0].double().numpy(), y[0].double().numpy())
    assert ours == pytest.approx(ref, abs=2e-5)
    assert 0.3 < ref < 0.99


# ----------------------------------------------------------------------------- what each check says
def _raises(exc, match, call):
    with pytest.raises(exc, match=match) as err:
        call()
    return str(err.value)


def test_input_checks_name_the_argument_and_the_fix():
    # non-numeric input: a TypeError that names the argument
    msg = _raises(TypeError, r"^pred must be a torch.Tensor or an array-like of numbers, got str", lambda: psnr("ab", [1.0]))
    assert "(" in msg
    _raises(TypeError, r"^target must be", lambda: psnr([1.0], object()))
    _raises(TypeError, r"^target_occupancy must be", lambda: iou([0.5], {"a": 1}))
    # array-likes are accepted as they are
    assert float(psnr([0.0, 0.0], [0.1, 0.1])) == pytest.approx(20.0)
    # the same-shape error: shapes in the message, a reshape hint only when the sizes agree
    msg = _raises(ValueError, r"same shape, got \(6,\) and \(2, 3\) \(shapes are never broadcast\)\. They hold",
                  lambda: psnr(torch.zeros(6), torch.zeros(2, 3)))
    assert "pred.reshape(target.shape)" in msg
    msg = _raises(ValueError, "same shape", lambda: psnr(torch.zeros(5), torch.zeros(2, 3)))
    assert "reshape" not in msg
    _raises(ValueError, r"^pred_occupancy and target_occupancy must have the same shape",
            lambda: iou(torch.zeros(3), torch.zeros(4)))
    # two devices
    _raises(ValueError, r"^pred is on meta and target on cpu; move both to one device first",
            lambda: psnr(torch.zeros(3, device="meta"), torch.zeros(3)))
    _raises(ValueError, r"^pred and target are empty \(shape \(0, 2\)\)", lambda: psnr(torch.zeros(0, 2), torch.zeros(0, 2)))
    # non-finite values are counted
    bad = torch.tensor([0.0, float("nan"), float("inf"), 1.0])
    _raises(ValueError, r"^target holds 2 non-finite value\(s\)", lambda: psnr(torch.zeros(4), bad))
    _raises(ValueError, r"^pred holds 2 non-finite", lambda: psnr(bad, torch.zeros(4)))
    _raises(ValueError, r"^target_occupancy holds 1 non-finite", lambda: iou(torch.zeros(2), torch.tensor([0.0, float("nan")])))
    _raises(ValueError, r"^pred_occupancy holds 1 non-finite",
            lambda: iou(torch.tensor([0.0, float("nan")]), torch.zeros(2), logits=True))
    # integer input is never "non-finite"
    assert float(psnr(torch.tensor([0, 0]), torch.tensor([0, 1]), data_range=1)) == pytest.approx(10 * math.log10(2))


@pytest.mark.parametrize("bad, exc", [("x", TypeError), (None, TypeError), (0, ValueError), (-1.0, ValueError),
                                      (float("inf"), ValueError), (float("nan"), ValueError)])
def test_data_range_must_be_positive_and_finite(bad, exc):
    msg = _raises(exc, r"^data_range must be a positive", lambda: psnr(torch.zeros(2), torch.ones(2), data_range=bad))
    assert "255 for 8-bit" in msg and repr(bad) in msg
    _raises(exc, r"^data_range", lambda: ms_ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), data_range=bad))
    _raises(exc, r"^data_range", lambda: psnr_from_mse(0.1, data_range=bad))


def test_reduction_and_psnr_from_mse_contracts():
    for call in (lambda: psnr(torch.zeros(2), torch.ones(2), reduction="sum"),
                 lambda: ms_ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), reduction=None)):
        _raises(ValueError, r"^reduction must be 'mean' \(one number\) or 'none'", call)
    _raises(ValueError, r"^mse must be >= 0 and not NaN", lambda: psnr_from_mse(torch.tensor([0.1, -1e-12])))
    _raises(ValueError, r"^mse must be", lambda: psnr_from_mse(float("nan")))
    out = psnr_from_mse(torch.tensor([[0.01, 1.0], [0.0, 4.0]]), data_range=2.0)
    assert out.dtype == torch.float64 and out.shape == (2, 2)
    assert out[0, 0] == pytest.approx(10 * math.log10(400)) and out[0, 1] == pytest.approx(10 * math.log10(4))
    assert math.isinf(float(out[1, 0])) and float(out[1, 1]) == pytest.approx(0.0, abs=1e-12)
    # a 4-D batch: one value per image; its mean is the mean of the PSNRs, not the PSNR of the mean MSE
    x = torch.zeros(2, 1, 2, 2)
    y = torch.stack([torch.full((1, 2, 2), 0.1), torch.full((1, 2, 2), 0.01)])
    per = psnr(x, y, reduction="none")
    assert per.shape == (2,) and per.tolist() == pytest.approx([20.0, 40.0])
    assert float(psnr(x, y)) == pytest.approx(30.0)
    # any other shape is one signal, also with reduction="none"
    one = psnr(x[:, 0], y[:, 0], reduction="none")
    assert one.dim() == 0 and float(one) == pytest.approx(10 * math.log10(1 / ((0.01 + 0.0001) / 2)))


def test_iou_threshold_and_label_checks():
    p, t = torch.tensor([0.2, 0.6, 0.9]), torch.tensor([0, 1, 1])
    for bad in ("x", None, [0.5]):
        _raises(TypeError, r"^threshold must be a number in \(0, 1\)", lambda: iou(p, t, threshold=bad))
    for bad in (0.0, 1.0, -0.1, 1.5):
        _raises(ValueError, r"^threshold must lie strictly between 0 and 1", lambda: iou(p, t, threshold=bad))
    assert float(iou(p, t, threshold=np.float32(0.7))) == pytest.approx(0.5)     # 0.9 only: 1 / 2
    msg = _raises(ValueError, r"^target_occupancy must hold labels 0 \(outside\) and 1 \(inside\) or booleans",
                  lambda: iou(p, torch.tensor([0.0, 2.0, 1.0])))
    assert "min 0.0, max 2.0" in msg and "target >= 0.5" in msg
    msg = _raises(ValueError, r"^pred_occupancy must be probabilities in \[0, 1\], got values in \[-0\.5, 0\.9\]",
                  lambda: iou(torch.tensor([-0.5, 0.6, 0.9]), t))
    assert "logits=True" in msg
    _raises(ValueError, "probabilities", lambda: iou(torch.tensor([0.1, 1.01, 0.5]), t))
    # integer predictions count as probabilities 0 / 1; integer labels work as well as float or bool ones
    assert float(iou(torch.tensor([0, 1, 1]), t)) == 1.0
    assert float(iou(torch.tensor([0, 1, 0]), t.float())) == 0.5
    assert float(iou(torch.tensor([False, True, True]), t.bool())) == 1.0
    # logits: the decision is z >= logit(threshold), with no range check
    z = torch.tensor([-3.0, 0.84, 0.85, 5.0])
    lab = torch.tensor([0, 1, 1, 1])
    # logit(0.7) = 0.8473: 0.84 is outside, 0.85 inside -> inside {2, 3}, labels {1, 2, 3}: 2 / 3
    assert float(iou(z, lab, threshold=0.7, logits=True)) == pytest.approx(2 / 3)
    assert float(iou(z, lab, logits=True)) == pytest.approx(1.0)                  # logit(0.5) = 0: {1, 2, 3}
    empty = iou(torch.zeros(3), torch.zeros(3))
    assert empty.dtype == torch.float64 and empty.dim() == 0 and float(empty) == 1.0


def test_ms_ssim_inputs_shapes_dtypes_and_scales():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 40, 40, generator=g)
    y = (x + 0.05 * torch.randn(2, 3, 40, 40, generator=g)).clamp(0, 1)
    _raises(ValueError, r"^ms_ssim needs 4-D tensors \(B, C, H, W\), got shape \(3, 40, 40\)\. For one \(H, W\)",
            lambda: ms_ssim(x[0], y[0]))
    per, scales = ms_ssim(x, y, reduction="none", return_scales=True)
    assert per.shape == (2,) and per.dtype == torch.float32 and scales == ms_ssim_scales(40, 40)[0]
    mean = ms_ssim(x, y)
    assert mean.dim() == 0 and float(mean) == pytest.approx(float(per.mean()), abs=1e-7)
    assert not isinstance(ms_ssim(x, y), tuple)
    # float32 with float64: promoted to float64, same value as both in float64
    mixed = ms_ssim(x, y.double(), reduction="none")
    assert mixed.dtype == torch.float64
    assert mixed.tolist() == pytest.approx(ms_ssim(x.double(), y.double(), reduction="none").tolist(), abs=1e-12)
    # 8-bit images with data_range 255 equal the [0, 1] images they quantize
    xi, yi = (x * 255).round().to(torch.uint8), (y * 255).round().to(torch.uint8)
    assert float(ms_ssim(xi, yi, data_range=255)) == pytest.approx(float(ms_ssim(xi.float() / 255, yi.float() / 255)), abs=1e-5)


# ----------------------------------------------------------------------------- found by mutation testing
def test_messages_count_the_bad_values_and_name_the_argument():
    bad = torch.tensor([float("nan"), float("inf"), 0.5, 0.25])
    _raises(ValueError, r"^pred holds 2 non-finite value\(s\) \(NaN or inf\); a metric of it is meaningless\. "
            r"Check the model output \(did training diverge\?\) or the data\.$", lambda: psnr(bad, torch.zeros(4)))
    img = torch.rand(1, 1, 16, 16)
    nan_img = img.clone()
    nan_img[0, 0, :3, 0] = float("nan")
    _raises(ValueError, r"^pred holds 3 non-finite", lambda: ms_ssim(nan_img, img))
    _raises(ValueError, r"^target holds 3 non-finite", lambda: ms_ssim(img, nan_img))
    # a shape mismatch with different sizes ends with the broadcast rule and no reshape hint
    _raises(ValueError, r"\(shapes are never broadcast\)\.$", lambda: psnr(torch.zeros(3), torch.zeros(4)))
    _raises(ValueError, r"^target_occupancy must hold labels .*Threshold soft targets first, e\.g\. target >= 0\.5\.$",
            lambda: iou(torch.tensor([0.2, 0.9]), torch.tensor([0.3, 1.0])))
    _raises(ValueError, r"If the model outputs logits, pass logits=True \(or apply torch\.sigmoid\)\.$",
            lambda: iou(torch.tensor([-0.2, 0.9]), torch.tensor([0.0, 1.0])))


@pytest.mark.parametrize("kwargs, name", [({"height": 0}, "height"), ({"width": True}, "width"),
                                          ({"height": True}, "height"), ({"win_size": 2.0}, "win_size"),
                                          ({"width": -3}, "width")])
def test_ms_ssim_scales_rejects_each_argument_by_name(kwargs, name):
    args = {"height": 64, "width": 64, **kwargs}
    _raises(ValueError, rf"^{name} must be a positive integer, got {args[name]!r}$",
            lambda: ms_ssim_scales(args["height"], args["width"], **({"win_size": args["win_size"]} if "win_size" in args else {})))


def test_ms_ssim_is_invariant_to_the_data_range_unit():
    """C1 = (0.01 L)^2, C2 = (0.03 L)^2 scale with the range L: 8-bit values with L = 255 give the value of [0, 1]."""
    x = _photo(64).double()
    y = _noisy(x, 0.1)
    unit = float(ms_ssim(x, y))
    assert float(ms_ssim(255 * x, 255 * y, data_range=255)) == pytest.approx(unit, rel=1e-12)
    assert float(ms_ssim(x, y, data_range=4.0)) != pytest.approx(unit, rel=1e-3)   # the constants do matter


def test_ms_ssim_float64_odd_sides_and_mixed_dtypes_match_pytorch_msssim():
    """Odd sides are padded before pooling (height and width both); float64 stays float64 (weights included)."""
    img = transform.resize(data.astronaut(), (177, 190), anti_aliasing=True)
    x = torch.tensor(img, dtype=torch.float64).permute(2, 0, 1)[None]
    y = _noisy(x, 0.08)
    ref = pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False)
    ours = ms_ssim(x, y, reduction="none")
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, ref, rtol=1e-13, atol=1e-13)
    mixed = ms_ssim(x, y.float(), reduction="none")           # promoted to float64, the pair converted together
    assert mixed.dtype == torch.float64
    torch.testing.assert_close(mixed, pytorch_msssim.ms_ssim(x, y.float().double(), data_range=1.0, size_average=False),
                               rtol=1e-13, atol=1e-13)
    wide = x.transpose(-1, -2).contiguous()                    # odd width this time
    torch.testing.assert_close(ms_ssim(wide, y.transpose(-1, -2).contiguous(), reduction="none"),
                               pytorch_msssim.ms_ssim(wide, y.transpose(-1, -2), data_range=1.0, size_average=False),
                               rtol=1e-13, atol=1e-13)


def test_iou_logit_at_the_threshold_counts_inside_and_is_float64():
    """sigmoid(0) = 0.5 >= 0.5: a logit exactly at logit(threshold) is inside, as its probability is."""
    logits = torch.tensor([0.0, -1e-9, 2.0, -3.0])
    target = torch.tensor([True, False, True, False])
    assert float(iou(logits, target, logits=True)) == 1.0
    assert float(iou(torch.sigmoid(logits.double()), target)) == 1.0
    for pred in (torch.tensor([1, 0, 1, 1]), torch.tensor([True, False, True, True]), torch.tensor([0.9, 0.1, 0.7, 0.6])):
        value = iou(pred, target)
        assert value.dtype == torch.float64 and float(value) == pytest.approx(2 / 3, abs=1e-15)


def test_ms_ssim_loop_in_float64_with_odd_sides_is_pytorch_msssim():
    """The loop used below 161 px, run at five scales on an odd-sided float64 image: pytorch_msssim to 1e-13."""
    img = transform.resize(data.astronaut(), (177, 190), anti_aliasing=True)
    x = torch.tensor(img, dtype=torch.float64).permute(2, 0, 1)[None]
    y = _noisy(x, 0.08)
    ref = pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False)
    for a, b, r in ((x, y, ref), (x.transpose(-1, -2), y.transpose(-1, -2), None)):
        loop = _ms_ssim_levels(a, b, data_range=1.0, weights=MS_SSIM_WEIGHTS, win_size=11, win_sigma=1.5)
        want = r if r is not None else pytorch_msssim.ms_ssim(a, b, data_range=1.0, size_average=False)
        assert loop.dtype == torch.float64
        torch.testing.assert_close(loop, want, rtol=1e-13, atol=1e-13)
