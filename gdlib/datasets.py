"""Data sets of the book's training studies: MNIST from IDX files, or scikit-learn's digits.

Seed 002 trains its networks on MNIST (60,000 training images of 28 x 28 pixels). The book
cannot download it, so the studies read it only when the reader has the files::

    export GDCOURSE_MNIST_DIR=/path/to/mnist   # holds train-images-idx3-ubyte[.gz] and
                                               # train-labels-idx1-ubyte[.gz]

and otherwise fall back to the 1797 digits of 8 x 8 pixels bundled with scikit-learn
(``sklearn.datasets.load_digits``). ``study_data()`` makes that choice and says which data it
returned (``Dataset.source``), so a page can print it.

The IDX format (LeCun's MNIST files): a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then
``ndim`` big-endian unsigned 32-bit sizes, then the values in C order, big-endian. ``read_idx``
reads it and raises ``ValueError`` naming the file for anything else.
"""

import gzip
import os
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["MNIST_ENV", "Dataset", "digits", "mnist", "read_idx", "standardize", "study_data"]

MNIST_ENV = "GDCOURSE_MNIST_DIR"

# IDX type byte -> big-endian numpy dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MNIST_FILES = {"images": "train-images-idx3-ubyte", "labels": "train-labels-idx1-ubyte"}


class Dataset(NamedTuple):
    """A classification data set ready for a study.

    ``X``: float32 array (n, d) of standardised features; ``y``: int64 labels (n,);
    ``hidden``: the hidden-layer widths of the study's network for this data (seed 002's
    784-500-300-10 on MNIST, one layer of 64 on the small digits); ``name``; ``source``: one
    sentence saying where the data came from (for the page to print).
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    hidden: tuple
    source: str


def read_idx(path) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip-compressed when it ends in ``.gz``).

    Raises ``ValueError`` (with the file name) for a wrong magic number, an unknown type byte,
    or a size that does not match the number of bytes that follow the header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (the first two bytes must be 0, "
                         f"got {data[:2].hex() or 'nothing'})")
    type_byte, ndim = data[2], data[3]
    if type_byte not in _IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX type byte 0x{type_byte:02x} (known: "
                         f"{', '.join(f'0x{t:02x}' for t in _IDX_TYPES)})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated header ({len(data)} bytes, {ndim} sizes need "
                         f"{header})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[type_byte])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: shape {shape} of {dtype.name} needs {expected} bytes of "
                         f"data, the file has {len(data) - header}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def standardize(pixels) -> np.ndarray:
    """Every column minus its mean, divided by its standard deviation (constant columns stay 0)
    as float32: ``(x - mean) / std``."""
    pixels = np.asarray(pixels, dtype=np.float64)
    mean, std = pixels.mean(axis=0), pixels.std(axis=0)
    return ((pixels - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def digits() -> Dataset:
    """scikit-learn's 1797 handwritten digits (8 x 8 pixels, grey levels 0-16), standardised."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return Dataset("digits", standardize(data.data), data.target.astype(np.int64), (64,),
                   f"scikit-learn's bundled digits ({len(data.target)} images of 8 x 8 pixels)")


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{directory} holds neither {stem} nor {stem}.gz")


def mnist(directory, limit: int | None = None) -> Dataset:
    """MNIST's training set from ``directory`` (IDX files, optionally gzipped), standardised;
    only the first ``limit`` images when ``limit`` is given."""
    directory = Path(directory)
    images = read_idx(_find(directory, _MNIST_FILES["images"]))
    labels = read_idx(_find(directory, _MNIST_FILES["labels"]))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{directory}: expected images (n, rows, cols) and labels (n,), got "
                         f"{images.shape} and {labels.shape}")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
        images, labels = images[:limit], labels[:limit]
    n, rows, cols = images.shape
    return Dataset("MNIST", standardize(images.reshape(n, rows * cols)),
                   labels.astype(np.int64), (500, 300),
                   f"MNIST from {directory} ({n} training images of {rows} x {cols} pixels)")


def study_data(limit: int | None = None, env: str = MNIST_ENV) -> Dataset:
    """MNIST when the environment variable ``env`` names a directory (then its files must be
    readable: errors are raised, not hidden), else the bundled digits."""
    directory = os.environ.get(env)
    if directory:
        return mnist(directory, limit)
    data = digits()
    return data._replace(source=f"{data.source}; set {env} to a directory with MNIST's IDX "
                                "files to run on MNIST instead")
