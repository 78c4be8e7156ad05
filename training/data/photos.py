"""Training photographs whose licences allow training and redistribution, shipped by scikit-image.

scikit-image installs a few sample photographs inside its package (``skimage/data``); each one's
docstring in ``skimage.data`` states its licence. Only public-domain and CC0 images are listed here
(docs/models.md repeats the table). They are read from the installed package at run time; nothing is
copied into this repository.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

#: file in skimage/data -> licence, as stated by scikit-image.
TRAINING_PHOTOS: dict[str, str] = {
    "astronaut.png": "public domain (NASA)",
    "brick.png": "CC0 (CC0Textures)",
    "camera.png": "CC0 (Lav Varshney)",
    "cell.png": "CC0",
    "chelsea.png": "CC0 (Stefan van der Walt)",
    "coffee.png": "CC0 (Rachel Michetti)",
    "coins.png": "no known copyright restrictions",
    "grass.png": "CC0",
    "gravel.png": "CC0 (CC0Textures)",
    "hubble_deep_field.jpg": "public domain (NASA)",
    "ihc.png": "no known copyright restrictions",
    "retina.jpg": "CC0",
    "rocket.jpg": "public domain (SpaceX)",
    "text.png": "public domain",
}


def photo_dir() -> Path:
    """The installed scikit-image sample-data folder."""
    try:
        import skimage
    except ImportError as err:  # pragma: no cover - requirements.txt installs it
        raise RuntimeError("training photographs come from scikit-image: pip install scikit-image") from err
    return Path(skimage.__file__).resolve().parent / "data"


def photo_paths() -> list[Path]:
    """Paths of the training photographs (all of them must be present)."""
    root = photo_dir()
    paths = [root / name for name in TRAINING_PHOTOS]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise RuntimeError(f"scikit-image sample photographs missing from {root}: {missing}")
    return paths


def load_photos() -> list[np.ndarray]:
    """The training photographs as (H, W, 3) uint8 RGB (grey images are repeated over channels)."""
    images = []
    for path in photo_paths():
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise RuntimeError(f"cannot read {path}")
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return images
