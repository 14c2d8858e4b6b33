"""inrlib.data.image_split: the training pixels and the held-out pixels between them."""
import re

import numpy as np
import pytest
import torch

from inrlib.data import image_split, load_image

#: Held-out pixels (row-major indices on the 2 side - 1 grid) drawn by the function this one replaced,
#: inrlib.book.studies.scaling.image_data, at the commit before the move (8d093d9): the split must not move.
OLD_DRAWS = {("camera", 6, False, 10, 0): [3, 7, 12, 20, 33, 36, 57, 69, 89, 99],
             ("camera", 7, True, 11, 3): [9, 16, 18, 29, 40, 55, 96, 124, 127, 141, 155]}


def _naive_split(image, side, grayscale, heldout, seed):
    """The documented rule written as loops: every finer pixel with an odd row or column, drawn with the seed."""
    fine = 2 * side - 1
    between = [r * fine + c for r in range(fine) for c in range(fine) if r % 2 == 1 or c % 2 == 1]
    pick = sorted(np.random.default_rng(seed).choice(between, size=min(heldout, len(between)), replace=False).tolist())
    fc, ft, _ = load_image(image, fine, grayscale=grayscale)
    return pick, fc[pick], ft[pick]


@pytest.mark.parametrize("case", list(OLD_DRAWS))
def test_the_split_is_the_old_one_and_the_documented_rule(case):
    image, side, grey, heldout, seed = case
    d = image_split(image, side, grayscale=grey, heldout=heldout, seed=seed)
    coords, targets, shape = load_image(image, side, grayscale=grey)
    assert torch.equal(d["coords"], coords) and torch.equal(d["targets"], targets) and d["shape"] == shape
    pick, hc, ht = _naive_split(image, side, grey, heldout, seed)
    assert pick == OLD_DRAWS[case]
    assert torch.equal(d["held_coords"], hc) and torch.equal(d["held_targets"], ht)
    assert d["held_coords"].dtype == torch.float32 and d["held_targets"].shape == (heldout, shape[2])


def test_heldout_and_training_pixels_are_disjoint_and_halfway():
    side = 9
    d = image_split("camera", side, grayscale=True, heldout=50, seed=1)
    train = d["coords"].double().numpy() * (side - 1)            # integer node positions
    held = d["held_coords"].double().numpy() * (side - 1)
    assert np.allclose(train, np.round(train))
    assert np.allclose(held * 2, np.round(held * 2), atol=1e-5), "held-out pixels sit on the half-pixel grid"
    assert (np.abs(held - np.round(held)) > 0.25).any(axis=1).all(), "each is halfway in x or in y"
    as_set = lambda a: {tuple(np.round(2 * p).astype(int)) for p in a}   # noqa: E731
    assert not as_set(train) & as_set(held) and len(as_set(held)) == 50
    # their values are the photo at 2 side - 1 pixels at those positions
    fc, ft, _ = load_image("camera", 2 * side - 1, grayscale=True)
    idx = [int(np.flatnonzero((fc.double().numpy() * (2 * side - 2) == h * 2).all(axis=1))[0]) for h in held]
    assert torch.equal(ft[idx], d["held_targets"])


def test_pool_colour_count_and_seed():
    side = 5
    fine = 2 * side - 1
    every = image_split("astronaut", side, heldout=10 ** 6)
    # asked for more than there are: every pixel of the finer photo with an odd row or an odd column
    rows, cols = np.divmod(np.arange(fine * fine), fine)
    want = np.flatnonzero((rows % 2 == 1) | (cols % 2 == 1))
    assert want.size == fine * fine - side * side
    fc, ft, _ = load_image("astronaut", fine)
    assert torch.equal(every["held_coords"], fc[want]) and torch.equal(every["held_targets"], ft[want])
    assert every["targets"].shape == (side * side, 3) and every["held_targets"].shape[1] == 3
    grey = image_split("astronaut", side, grayscale=True, heldout=4)
    assert grey["targets"].shape == (side * side, 1) and grey["held_targets"].shape == (4, 1)
    none = image_split("astronaut", side, heldout=0)
    assert none.keys() == {"coords", "targets", "shape", "held_coords", "held_targets"}
    assert none["held_coords"].shape == (0, 2) and none["held_targets"].shape == (0, 3)
    assert image_split("astronaut", 1, heldout=5)["held_coords"].shape == (0, 2)     # one pixel: nothing between
    # the draw follows the seed, and only the held-out pixels depend on it
    a, b = (image_split("astronaut", side, heldout=12, seed=s) for s in (3, 4))
    assert torch.equal(a["held_coords"], image_split("astronaut", side, heldout=12, seed=3)["held_coords"])
    assert not torch.equal(a["held_coords"], b["held_coords"])
    assert torch.equal(a["coords"], b["coords"]) and torch.equal(a["targets"], b["targets"])
    assert torch.equal(image_split("astronaut", side, heldout=12)["held_coords"],
                       image_split("astronaut", side, heldout=12, seed=0)["held_coords"])


@pytest.mark.parametrize("kwargs, name", [({"side": 0}, "side"), ({"side": 2.5}, "side"), ({"side": "8"}, "side"),
                                          ({"side": True}, "side"), ({"heldout": -1}, "heldout"),
                                          ({"heldout": 1.5}, "heldout")])
def test_bad_sizes_are_refused_by_name(kwargs, name):
    args = {"side": 4, **kwargs}
    with pytest.raises(ValueError, match=rf"image_split: {name} must be an integer >= [01], got"):
        image_split("camera", args.pop("side"), **args)


# ----------------------------------------------------------------------------- sizes: ints or pairs of ints
_SIZE_FIX = "size must be a positive integer or a pair (height, width) of them"


@pytest.mark.parametrize("bad, kind, shown", [
    ("64", TypeError, "'64' (str)"),            # used to unpack to its digits: a 6 x 4 image
    ("8", TypeError, "'8' (str)"), (2.5, TypeError, "2.5 (float)"), (8.0, TypeError, "8.0 (float)"),
    (True, TypeError, "True (bool)"), ((4, True), TypeError, "(4, True) (tuple)"),
    ((4, 2.5), TypeError, "(4, 2.5) (tuple)"), ((4,), TypeError, "(4,) (tuple)"),
    (0, ValueError, "0 (int)"), (-3, ValueError, "-3 (int)"), ((4, 0), ValueError, "(4, 0) (tuple)"),
    (np.int64(0), ValueError, "(int64)")])
def test_load_image_refuses_a_size_that_is_not_ints(bad, kind, shown):
    with pytest.raises(kind) as err:
        load_image(np.zeros((8, 8)), bad)
    msg = str(err.value)
    assert msg.startswith(f"resolution: {_SIZE_FIX}, got ") and shown in msg and "None for the full image" in msg


def test_load_image_takes_python_and_numpy_ints():
    img = np.random.default_rng(0).random((12, 10, 3))
    for size, shape in ((np.int64(5), (5, 5, 3)), ((np.int32(6), 4), (6, 4, 3)), (np.array([6, 4]), (6, 4, 3)),
                        ([3, 7], (3, 7, 3)), (torch.Size([3, 7]), (3, 7, 3))):
        _, targets, got = load_image(img, size)
        assert got == shape and targets.shape == (shape[0] * shape[1], 3)


def test_pixel_coords_refuses_non_integer_sides():
    from inrlib.data import pixel_coords
    for h, w, kind in ((2.5, 3, TypeError), ("4", 3, TypeError), (True, 3, TypeError), (0, 3, ValueError)):
        with pytest.raises(kind, match=rf"^pixel_coords: {re.escape(_SIZE_FIX)}, got \({h!r}, {w!r}\) \(tuple\)$"):
            pixel_coords(h, w)
    assert pixel_coords(np.int64(2), 3).shape == (6, 2)
