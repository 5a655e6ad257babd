"""gdlib.datasets: the IDX reader on files written here, MNIST loading, the digits fallback."""

import gzip
import struct

import numpy as np
import pytest

from gdlib import datasets


def write_idx(path, array, type_byte=0x08, dtype=">u1"):
    """An IDX file holding ``array``: magic 0 0 type ndim, big-endian sizes, the values."""
    array = np.asarray(array)
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(dtype).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as file:
        file.write(data)
    return path


@pytest.mark.parametrize("type_byte, dtype", [(0x08, ">u1"), (0x09, ">i1"), (0x0B, ">i2"),
                                              (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")])
def test_read_idx_round_trips_every_type(tmp_path, type_byte, dtype):
    values = np.arange(24).reshape(2, 3, 4) - (0 if dtype == ">u1" else 5)
    got = datasets.read_idx(write_idx(tmp_path / "a.idx", values, type_byte, dtype))
    assert got.shape == (2, 3, 4)
    assert got.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(got, values)


def test_read_idx_reads_gzip(tmp_path):
    values = np.array([[0, 255], [7, 8]])
    np.testing.assert_array_equal(datasets.read_idx(write_idx(tmp_path / "a.gz", values)),
                                  values)


def test_read_idx_rejects_a_wrong_magic_number(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x89PNG\r\n")
    with pytest.raises(ValueError, match=r"bad\.idx: not an IDX file .*got 8950"):
        datasets.read_idx(path)


def test_read_idx_rejects_an_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="got nothing"):
        datasets.read_idx(path)


def test_read_idx_rejects_an_unknown_type(tmp_path):
    path = tmp_path / "t.idx"
    path.write_bytes(bytes([0, 0, 0x0A, 1]) + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="unknown IDX type byte 0x0a"):
        datasets.read_idx(path)


def test_read_idx_rejects_truncated_header_and_data(tmp_path):
    path = tmp_path / "h.idx"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 2))
    with pytest.raises(ValueError, match="truncated header"):
        datasets.read_idx(path)
    path = write_idx(tmp_path / "d.idx", np.zeros((4, 5)))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"shape \(4, 5\) of uint8 needs 20 bytes .* has 17"):
        datasets.read_idx(path)


def test_read_idx_rejects_trailing_bytes(tmp_path):
    path = write_idx(tmp_path / "t.idx", np.zeros(3))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(ValueError, match="needs 3 bytes of data, the file has 4"):
        datasets.read_idx(path)


def fake_mnist(directory, n=6, gz=False):
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, size=(n, 4, 3))
    labels = np.arange(n) % 10
    suffix = ".gz" if gz else ""
    write_idx(directory / f"train-images-idx3-ubyte{suffix}", images)
    write_idx(directory / f"train-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_and_standardises(tmp_path, gz):
    _, labels = fake_mnist(tmp_path, gz=gz)
    data = datasets.mnist(tmp_path)
    assert data.name == "MNIST" and data.hidden == (500, 300)
    assert data.X.shape == (6, 12) and data.X.dtype == np.float32
    np.testing.assert_array_equal(data.y, labels)
    np.testing.assert_allclose(data.X.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(data.X.std(axis=0), 1, atol=1e-5)
    assert "6 training images of 4 x 3 pixels" in data.source
    assert len(datasets.mnist(tmp_path, limit=4).y) == 4


def test_mnist_names_missing_files_and_bad_limits(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        datasets.mnist(tmp_path)
    fake_mnist(tmp_path)
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        datasets.mnist(tmp_path, limit=0)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(5))
    with pytest.raises(ValueError, match=r"got \(6, 4, 3\) and \(5,\)"):
        datasets.mnist(tmp_path)


def test_standardize_keeps_constant_columns_at_zero():
    x = datasets.standardize([[1.0, 5.0], [3.0, 5.0]])
    np.testing.assert_array_equal(x, [[-1.0, 0.0], [1.0, 0.0]])


def test_study_data_falls_back_to_digits_and_says_so(monkeypatch):
    monkeypatch.delenv(datasets.MNIST_ENV, raising=False)
    data = datasets.study_data()
    assert data.name == "digits" and data.X.shape == (1797, 64) and data.hidden == (64,)
    assert "bundled digits" in data.source and datasets.MNIST_ENV in data.source


def test_study_data_reads_mnist_from_the_configured_directory(monkeypatch, tmp_path):
    fake_mnist(tmp_path)
    monkeypatch.setenv(datasets.MNIST_ENV, str(tmp_path))
    data = datasets.study_data(limit=5)
    assert data.name == "MNIST" and len(data.y) == 5
    monkeypatch.setenv(datasets.MNIST_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError):
        datasets.study_data()
