"""Read an input file for an MLflow deployment with no scoring script, by its extension, as Azure's
MLflow batch deployments do ("Deploy MLflow models in batch deployments", file types):

* ``.csv``, ``.parquet``, ``.pqt`` (and ``.pq``): a ``pandas.DataFrame``, the model called once per file;
* ``.png``, ``.jpg``, ``.jpeg``, ``.tiff``, ``.bmp``, ``.gif``: a ``numpy.ndarray`` of the image's
  pixels (height × width, × channels unless grey), the model called once per image. With a tensor
  signature (``TensorSpec``) the array is reshaped to its shape (``-1`` axes take the image's own
  sizes, the batch axis 1) and cast to its type; with none it stays ``uint8``. A column-based
  signature cannot take an image and is refused. Reading images needs Pillow in the environment
  the model runs in.

Any other type (``.json``, ``.txt``, ``.tsv``, ``.avro``, …) is refused naming those, as on Azure, where
an unsupported file fails; a scoring script reads anything. A file that cannot be read raises
:class:`FileReadError`, a failure of kind ``input`` (the file's, not the model's or the platform's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from batchpoint.exceptions import InputError

READERS = {
    ".csv": lambda p: pd.read_csv(p),
    ".parquet": lambda p: pd.read_parquet(p),
    ".pqt": lambda p: pd.read_parquet(p),
    ".pq": lambda p: pd.read_parquet(p),
}
IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".tiff", ".bmp", ".gif")
SUPPORTED = (*READERS, *IMAGE_TYPES)


class FileReadError(InputError):
    """An input file could not be read or parsed (failure kind ``input``)."""

    code = "file_read_error"
    failure_kind = "input"


def read_input(path: str) -> pd.DataFrame | Any:
    """A table file as a DataFrame, an image as a ``numpy.ndarray``; any other type is refused."""
    if Path(path).suffix.lower() in IMAGE_TYPES:
        return read_image(path)
    return read_table(path)


def read_table(path: str) -> pd.DataFrame:
    name, suffix = Path(path).name, Path(path).suffix.lower()
    reader = READERS.get(suffix)
    if reader is None:
        raise FileReadError(
            f"file '{name}' has type '{suffix or '(none)'}', which an MLflow deployment without "
            f"a scoring script cannot read; supported: {', '.join(SUPPORTED)} (tables: a DataFrame per file; "
            "images: an array per file). Add a scoring script (code_configuration) to read other formats."
        )
    try:
        return reader(path)
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many types for a bad file
        raise FileReadError(f"file '{name}' could not be read as {suffix.lstrip('.')}: "
                            f"{type(exc).__name__}: {str(exc)[:500]}; fix or remove the file") from exc


def read_image(path: str) -> Any:
    """The image's pixels as a ``uint8`` array: height × width (grey) or × 3/4 channels; the first
    frame of an animated GIF."""
    import numpy as np

    name = Path(path).name
    try:
        from PIL import Image
    except ImportError:
        raise FileReadError(f"file '{name}' is an image, and reading images for an MLflow model needs Pillow in "
                            "the environment the model runs in: add pillow to the model's requirements (or the "
                            "deployment's conda file); with env_manager: local, install batchpoint[images] on the "
                            "server") from None
    try:
        with Image.open(path) as image:
            image.seek(0)
            if image.mode not in ("L", "RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
            return np.asarray(image).copy()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a bad file
        raise FileReadError(f"file '{name}' could not be read as an image: {type(exc).__name__}: {str(exc)[:300]}; "
                            "fix or remove the file") from exc


def image_for_model(pixels: Any, schema: Any, name: str) -> Any:
    """``pixels`` shaped for a model with input signature ``schema`` (MLflow's ``Schema``, or None)."""
    if schema is None:
        return pixels
    if not schema.is_tensor_spec():
        raise FileReadError(f"file '{name}' is an image, but the model's input signature is column-based: an MLflow "
                            "model that takes images needs a tensor signature (TensorSpec), or a scoring script")
    if len(schema.inputs) != 1:
        raise FileReadError(f"file '{name}' is an image, but the model's signature names {len(schema.inputs)} input "
                            "tensors: an image fills one; use a scoring script to feed several")
    spec = schema.inputs[0]
    shape = tuple(spec.shape)
    try:
        return pixels.reshape(_target_shape(shape, pixels.shape)).astype(spec.type, copy=False)
    except (ValueError, TypeError) as exc:
        raise FileReadError(f"file '{name}' (an image of shape {tuple(pixels.shape)}) does not fit the model's input "
                            f"tensor of shape {shape}: {exc}") from exc


def _target_shape(shape: tuple[int, ...], image: tuple[int, ...]) -> tuple[int, ...]:
    """The tensor shape an image's array takes: ``-1`` axes filled from the image (a leading batch
    axis of 1); where the image's axes do not line up, numpy's own reshape (one ``-1`` at most)."""
    if len(shape) in (len(image), len(image) + 1):
        sizes = image if len(shape) == len(image) else (1, *image)
        if all(want in (-1, have) for want, have in zip(shape, sizes)):
            return tuple(sizes)
    return shape
