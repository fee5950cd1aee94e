"""Bad inputs: each gives a clear InputError (or FormatError for a weight file) naming what was
wrong, or the correct answer; odd but valid arrays give the same bits as a plain float32 array."""

from __future__ import annotations

import os
import pickle
import struct
import sys
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
from numpy.lib import format as npy_format

import pdinfer
from pdinfer import ConfigError, FormatError, InputError, MissingExtraError, PdinferError
from small_model import INPUT_SHAPE, sample_images, small_layers, small_tensors, write_small_model

IMAGES = sample_images(5)  # (5, 1, 10, 12) float32 in [0, 1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_small_model(tmp_path_factory.mktemp("inputs") / "small.pdw")


@pytest.fixture(scope="module")
def model(weights):
    return pdinfer.load(weights)


@pytest.fixture(scope="module")
def expected(model):
    return model(IMAGES)  # (5, 3)


# -- arrays: shape -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [
    (), (12,), (10, 12), (1, 1, 1, 10, 12), (1, 10, 13), (1, 12, 10), (3, 10, 12), (2, 3, 10, 12),
    (2, 1, 12, 10), (2, 10, 12, 1), (0, 1, 10, 12), (1, 0, 12), (1, 10, 0), (0, 10, 12), (4, 0, 10, 12), (0,)])
def test_wrong_or_empty_shape(model, shape):
    with pytest.raises(InputError, match=r"input shape must be \(1, 10, 12\) or \(N, 1, 10, 12\) "
                                         r"with N >= 1, got " + str(shape).replace("(", r"\(").replace(")", r"\)")):
        model(np.zeros(shape, np.float32))


# -- arrays: dtype -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint64])
def test_integer_input_is_rejected_with_a_scaling_hint(model, dtype):
    with pytest.raises(InputError, match=f"got {np.dtype(dtype)} \\(scale 8-bit images to \\[0, 1\\] first\\)"):
        model((IMAGES * 255).astype(dtype))


@pytest.mark.parametrize("dtype", [bool, np.complex64, np.complex128, object, "U4", "S4", "M8[s]",
                                   [("a", np.float32)]])
def test_non_float_input_is_rejected(model, dtype):
    x = np.zeros((1, *INPUT_SHAPE), dtype)
    with pytest.raises(InputError, match="input dtype must be floating point") as info:
        model(x)
    assert "scale 8-bit" not in str(info.value)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.longdouble])
def test_other_float_dtypes_give_the_float32_answer(model, dtype):
    x = IMAGES.astype(dtype)
    assert np.array_equal(model(x), model(x.astype(np.float32)))
    if dtype != np.float16:  # float32 values survive the round trip exactly
        assert np.array_equal(model(x), model(IMAGES))


@pytest.mark.parametrize("value", [[0.5] * 12, IMAGES.tolist(), tuple(IMAGES[0].tolist()), 0.5, None, "x.npy",
                                   memoryview(IMAGES.tobytes())])
def test_non_arrays_are_rejected(model, value):
    with pytest.raises(InputError, match="input must be a numpy array, got"):
        model(value)


# -- arrays: values ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0, 0, 0), (4, 0, 9, 11), (2, 0, 5, 6)])
def test_nan_and_infinity_are_rejected(model, bad, where):
    x = IMAGES.copy()
    x[where] = bad
    with pytest.raises(InputError, match="input holds NaN or infinite values"):
        model(x)
    with pytest.raises(InputError, match="NaN or infinite"):
        model(x[where[0]])


def test_float64_beyond_float32_range_is_rejected(model):
    x = IMAGES.astype(np.float64)
    x[1, 0, 2, 3] = 1e300  # becomes +inf in float32
    with pytest.raises(InputError, match="NaN or infinite"):
        model(x)


# -- arrays: layout ------------------------------------------------------------------------------

def _read_only(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x.setflags(write=False)
    return x


def _canvas_slice(x: np.ndarray) -> np.ndarray:
    canvas = np.zeros((x.shape[0], 2, 20, 30), np.float32)
    canvas[:, 1:2, 3:13, 5:17] = x
    return canvas[:, 1:2, 3:13, 5:17]


def _transposed_view(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0)


LAYOUTS = {
    "every other image": lambda x: np.repeat(x, 2, axis=0)[::2],
    "reversed twice": lambda x: x[::-1, :, ::-1, ::-1][::-1, :, ::-1, ::-1],
    "slice of a larger canvas": _canvas_slice,
    "transposed view": _transposed_view,
    "Fortran order": np.asfortranarray,
    "read-only": _read_only,
    "read-only bytes buffer": lambda x: np.frombuffer(x.tobytes(), np.float32).reshape(x.shape),
    "big-endian float32": lambda x: x.astype(">f4"),
    "big-endian float64": lambda x: x.astype(">f8"),
    "big-endian, read-only, transposed": lambda x: _read_only(_transposed_view(x.astype(">f4"))),
}


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
def test_any_layout_gives_the_same_bits(model, expected, layout):
    x = LAYOUTS[layout](IMAGES)
    before = x.copy()
    assert np.array_equal(x, IMAGES)
    assert np.array_equal(model(x), expected)
    assert np.array_equal(model(x[3]), expected[3])
    assert np.array_equal(x, before) and x.dtype == before.dtype  # the input is not changed


def test_broadcast_view_with_zero_strides(model, expected):
    x = np.broadcast_to(IMAGES[2], (7, *INPUT_SHAPE))
    assert np.array_equal(model(x), np.repeat(expected[2:3], 7, axis=0))


def test_one_image_gives_its_row_of_the_batch(model, expected):
    for i, image in enumerate(IMAGES):
        out = model(image)
        assert out.shape == (3,) and np.array_equal(out, expected[i])


def test_outputs_are_fresh_arrays(model, expected):
    out = model(IMAGES)
    out[:] = -1
    assert np.array_equal(model(IMAGES), expected)


@pytest.mark.parametrize("passes, extra", [(1, -1), (1, 0), (1, 1), (3, 5)])
def test_large_batches_run_in_passes_and_are_correct(model, passes, extra):
    count = passes * model._plan.chunk + extra  # a batch runs in chunks, each segment a few images a pass
    x = sample_images(count, seed=count)
    out = model(x)
    assert out.shape == (count, 3) and out.dtype == np.float32
    pieces = np.concatenate([model(x[i:i + 37]) for i in range(0, count, 37)])
    assert np.array_equal(out, pieces)
    assert np.array_equal(out[count // 2], model(x[count // 2]))


# -- pdinfer.run: weight paths -------------------------------------------------------------------

def test_run_with_a_missing_or_unreadable_weight_file(tmp_path):
    with pytest.raises(FormatError, match="missing.pdw: cannot read weight file: No such file"):
        pdinfer.run(tmp_path / "missing.pdw", IMAGES)
    with pytest.raises(FormatError, match="cannot read file"):
        pdinfer.run(tmp_path, IMAGES)
    (tmp_path / "text.pdw").write_text("not a weight file")
    with pytest.raises(FormatError, match="text.pdw"):
        pdinfer.run(tmp_path / "text.pdw", IMAGES)


def test_run_with_arrays(weights, model, expected):
    assert np.array_equal(pdinfer.run(weights, IMAGES), expected)
    assert np.array_equal(pdinfer.run(model, IMAGES[1]), expected[1])
    assert np.array_equal(pdinfer.run(weights, IMAGES[1, 0]), expected[1])  # (H, W) for one channel
    with pytest.raises(InputError, match="numpy array"):
        pdinfer.run(weights, IMAGES.tolist())
    with pytest.raises(InputError, match="input shape"):
        pdinfer.run(weights, IMAGES[1, 0, :, :5])


# -- pdinfer.run: image files --------------------------------------------------------------------

def test_npy_images(tmp_path, weights, expected):
    cases = {"batch.npy": IMAGES, "one.npy": IMAGES[2], "plane.npy": IMAGES[2, 0],
             "wide.npy": IMAGES.astype(np.float64), "fortran.npy": np.asfortranarray(IMAGES),
             "bigendian.NPY": IMAGES.astype(">f4")}
    for name, array in cases.items():
        with open(tmp_path / name, "wb") as f:  # np.save(path) would append ".npy" to ".NPY"
            np.save(f, array)
        out = pdinfer.run(weights, tmp_path / name)
        assert np.array_equal(out, expected if out.ndim == 2 else expected[2]), name


@pytest.mark.parametrize("name, content, match", [
    ("missing.npy", None, "missing.npy: cannot read image: .*No such file"),
    ("missing.png", None, "missing.png: cannot read image: .*No such file"),
    ("notes.txt", b"hello", "notes.txt: unsupported image file type '.txt' \\(use .npy or .png\\)"),
    ("noext", b"\x93NUMPY", "unsupported image file type ''"),
    ("text.npy", b"hello, not numpy", "text.npy: cannot read image"),
    ("empty.npy", b"", "empty.npy: cannot read image"),
    ("truncated.npy", "truncated", "truncated.npy: cannot read image"),
    ("lying.npy", "lying", "lying.npy: cannot read image"),
    ("ints.npy", "ints", "dtype must be floating point.*scale 8-bit"),
    ("text.png", b"hello, not a PNG", "text.png: cannot read image"),
    ("truncated.png", "truncated png", "truncated.png: cannot read image"),
])
def test_bad_image_files(tmp_path, weights, name, content, match):
    path = tmp_path / name
    if content == "truncated":
        np.save(path, IMAGES)
        path.write_bytes(path.read_bytes()[:-100])
    elif content == "lying":  # a 200-byte file whose header claims 4 GB of data
        with open(path, "wb") as f:
            npy_format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**9,)})
            f.write(b"\0" * 100)
    elif content == "ints":
        np.save(path, (IMAGES * 255).astype(np.uint8))
    elif content == "truncated png":
        from PIL import Image
        Image.fromarray((IMAGES[0, 0] * 255).astype(np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif content is not None:
        path.write_bytes(content)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=match):
            pdinfer.run(weights, path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 4 << 20, f"reading {name} allocated {peak} bytes"


def test_a_directory_gives_every_image_in_it_sorted(tmp_path, weights, model):
    np.save(tmp_path / "b.npy", IMAGES[:3])
    with open(tmp_path / "a.NPY", "wb") as f:  # np.save(path) would append ".npy"
        np.save(f, IMAGES[4])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "z.npy").mkdir()  # a subdirectory, whatever its name
    np.save(tmp_path / "z.npy" / "c.npy", IMAGES[0])
    with pytest.warns(UserWarning, match=r"subdirectories not walked \(pass recursive=True\): .*z\.npy"):
        out = pdinfer.run(weights, tmp_path)
    assert list(out) == [str(tmp_path / "a.NPY"), str(tmp_path / "b.npy")]
    assert np.array_equal(out[str(tmp_path / "b.npy")], model(IMAGES[:3]))
    assert np.array_equal(out[str(tmp_path / "a.NPY")], model(IMAGES[4]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recursive: nothing left out, no warning
        deep = pdinfer.run(model, str(tmp_path), recursive=True)
    assert list(deep) == [str(tmp_path / "a.NPY"), str(tmp_path / "b.npy"), str(tmp_path / "z.npy" / "c.npy")]
    assert np.array_equal(deep[str(tmp_path / "z.npy" / "c.npy")], model(IMAGES[0]))


def test_a_directory_without_images_or_with_a_bad_one(tmp_path, weights):
    with pytest.raises(InputError, match="no .png or .npy files in the directory"):
        pdinfer.run(weights, tmp_path)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="bad.npy: cannot read image"):
        pdinfer.run(weights, tmp_path)


def test_a_linked_directory_is_reported_not_followed(tmp_path, weights):
    (tmp_path / "top").mkdir()
    np.save(tmp_path / "top" / "a.npy", IMAGES[0])
    (tmp_path / "top" / "loop").symlink_to(tmp_path / "top")
    with pytest.warns(UserWarning, match="loop"):
        assert list(pdinfer.run(weights, tmp_path / "top", recursive=True)) == [str(tmp_path / "top" / "a.npy")]


def test_a_pipe_is_not_read(tmp_path, weights):
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)  # opening it would block until a writer comes
    with pytest.raises(InputError, match="pipe.npy: cannot read image: not a regular file"):
        pdinfer.read_image(fifo)


class _Tripwire:
    """Unpickling this creates a file: proof that an image reader ran pickle."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_pickles_are_never_loaded(tmp_path, weights):
    tripwire = tmp_path / "unpickled"
    np.save(tmp_path / "objects.npy", np.array([_Tripwire(tripwire)], dtype=object), allow_pickle=True)
    (tmp_path / "raw.npy").write_bytes(pickle.dumps(_Tripwire(tripwire)))
    assert not tripwire.exists()
    with pytest.raises(InputError, match="objects.npy: cannot read image: .*(objects|pickle)"):
        pdinfer.run(weights, tmp_path / "objects.npy")
    with pytest.raises(InputError, match="raw.npy: cannot read image: .*pickle"):
        pdinfer.run(weights, tmp_path / "raw.npy")
    assert not tripwire.exists()


# -- pdinfer.run: PNG ----------------------------------------------------------------------------

def test_png_images(tmp_path, weights, model):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (10, 12), dtype=np.uint8)
    as_float = (gray.astype(np.float32) / np.float32(255))[None]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert np.array_equal(pdinfer.run(weights, tmp_path / "gray.png"), model(as_float))
    assert np.array_equal(pdinfer.read_image(tmp_path / "gray.png"), as_float)

    rgb = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    luma = np.asarray(Image.fromarray(rgb).convert("L"), np.float32)[None] / np.float32(255)
    for mode in ("RGB", "RGBA", "P", "LA"):
        name = f"colour-{mode}.PNG"
        Image.fromarray(rgb).convert(mode).save(tmp_path / name)
        out = pdinfer.run(weights, tmp_path / name)
        if mode in ("RGB", "RGBA"):
            assert np.array_equal(out, model(luma)), mode
        assert out.shape == (3,) and np.isfinite(out).all(), mode

    deep = rng.integers(0, 65536, (10, 12), dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert np.array_equal(pdinfer.run(weights, tmp_path / "deep.png"),
                          model((deep.astype(np.float32) / np.float32(65535))[None]))

    Image.fromarray(np.zeros((11, 12), np.uint8)).save(tmp_path / "wrong-size.png")
    with pytest.raises(InputError, match=r"got \(1, 11, 12\)"):
        pdinfer.run(weights, tmp_path / "wrong-size.png")


def test_gray_png_for_a_three_channel_model(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    layers, tensors = small_layers(), small_tensors()
    layers[0]["params"]["in_channels"] = 3
    tensors["conv0.weight"] = np.random.default_rng(4).normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32)
    rgb_model = pdinfer.load(write_small_model(tmp_path / "rgb.pdw", layers, tensors, input_shape=(3, 10, 12)))
    gray = np.random.default_rng(5).integers(0, 256, (10, 12), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    as_float = gray.astype(np.float32) / np.float32(255)
    assert np.array_equal(pdinfer.run(rgb_model, tmp_path / "gray.png"), rgb_model(np.stack([as_float] * 3)))
    with pytest.raises(InputError, match=r"got \(10, 12\)"):  # (H, W) is for one-channel models only
        pdinfer.run(rgb_model, as_float)


def write_png(path, pixels: np.ndarray) -> None:
    """A PNG written byte by byte (Pillow cannot write 16-bit colour): pixels (H, W) gray,
    (H, W, 2) gray+alpha, (H, W, 3) RGB or (H, W, 4) RGBA, uint8 or uint16."""
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    big_endian = pixels.astype(pixels.dtype.newbyteorder(">"))
    rows = b"".join(b"\0" + row.tobytes() for row in big_endian)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 8 * pixels.itemsize, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def test_16_bit_grayscale_png_is_value_over_65535(tmp_path, weights, model):
    pytest.importorskip("PIL.Image")
    deep = np.random.default_rng(6).integers(0, 65536, (10, 12), dtype=np.uint16)
    deep[0, :3] = [0, 1, 65535]
    write_png(tmp_path / "deep.png", deep)
    expected = (deep.astype(np.float32) / np.float32(65535))[None]
    assert np.array_equal(pdinfer.read_image(tmp_path / "deep.png"), expected)
    assert np.array_equal(pdinfer.read_image(tmp_path / "deep.png", 3), np.repeat(expected, 3, axis=0))
    assert np.array_equal(pdinfer.run(weights, tmp_path / "deep.png"), model(expected))


def test_8_bit_pngs_written_by_hand_read_as_pillow_writes_them(tmp_path):
    pytest.importorskip("PIL.Image")
    rgb = np.random.default_rng(7).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    write_png(tmp_path / "rgb.png", rgb)
    assert np.array_equal(pdinfer.read_image(tmp_path / "rgb.png", 3), rgb.transpose(2, 0, 1) / np.float32(255))


@pytest.mark.parametrize("channels", [3, 2, 4])  # RGB, gray + alpha, RGBA
def test_16_bit_colour_png_is_refused(tmp_path, weights, channels):
    pytest.importorskip("PIL.Image")
    write_png(tmp_path / "colour16.png", np.full((10, 12, channels), 40000, np.uint16))
    with pytest.raises(InputError, match="colour16.png: 16-bit colour PNGs are not supported "
                                         r"\(Pillow reads only their top 8 bits\)"):
        pdinfer.run(weights, tmp_path / "colour16.png")


def test_png_without_pillow_names_the_extra(tmp_path, weights, monkeypatch):
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `from PIL import Image` raise ImportError
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(MissingExtraError, match=r"reading PNG files needs Pillow: pip install 'pdinfer\[image\]'") as info:
        pdinfer.run(weights, tmp_path / "image.png")
    assert isinstance(info.value, ImportError) and isinstance(info.value, PdinferError)
    np.save(tmp_path / "image.npy", IMAGES[0])  # .npy needs no Pillow
    assert pdinfer.run(weights, tmp_path / "image.npy").shape == (3,)


# -- set_num_threads -----------------------------------------------------------------------------

@pytest.fixture
def restore_threads():
    yield
    pdinfer.set_num_threads(1)


@pytest.mark.parametrize("bad", [0, -1, 1.5, 2.0, "2", None, True, np.int64(2)])
def test_bad_thread_counts_raise_config_error(bad, restore_threads):
    with pytest.raises(ConfigError, match=r"number of threads must be an integer >= 1, got") as info:
        pdinfer.set_num_threads(bad)
    assert isinstance(info.value, ValueError) and isinstance(info.value, PdinferError)
    assert pdinfer.get_num_threads() == 1


def test_more_threads_than_usable_cores_are_capped_with_a_warning(monkeypatch, restore_threads, model, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3}, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pdinfer.set_num_threads(2)
    assert pdinfer.get_num_threads() == 2
    with pytest.warns(RuntimeWarning, match=r"set_num_threads\(9\): only 2 cores are usable, using 2 threads"):
        pdinfer.set_num_threads(9)
    assert pdinfer.get_num_threads() == 2
    assert np.array_equal(model(IMAGES), expected)
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS, Windows: the CPU count
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    with pytest.warns(RuntimeWarning, match="only 3 cores"):
        pdinfer.set_num_threads(4)
    assert pdinfer.get_num_threads() == 3


# -- Model.trace: the reference graph ---------------------------------------------------------

def test_trace_reads_the_file_once_and_refuses_a_different_model(tmp_path):
    path = write_small_model(tmp_path / "model.pdw")
    model = pdinfer.load(path)
    x = sample_images(2)
    first = model.trace(x)
    path.unlink()  # a resident model keeps only its fast weights; the first trace kept the rest
    assert all(np.array_equal(a, b) for a, b in zip(first.values(), model.trace(x).values()))

    other = pdinfer.load(write_small_model(tmp_path / "other.pdw"))
    write_small_model(tmp_path / "other.pdw", tensors=small_tensors(seed=5))  # replaced after loading
    with pytest.raises(FormatError, match="no longer holds the model that was loaded"):
        other.trace(x)
