import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cloudseg import rle
from cloudseg.errors import DataError

masks = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda shape: arrays(np.bool_, shape)
)


@settings(max_examples=200, deadline=None)
@given(mask=masks, order=st.sampled_from(["F", "C"]))
def test_round_trip(mask, order):
    assert np.array_equal(rle.decode(rle.encode(mask, order), mask.shape, order), mask)


@pytest.mark.parametrize("order", ["F", "C"])
def test_empty_and_full(order):
    assert rle.encode(np.zeros((5, 7), bool), order) == ""
    assert rle.encode(np.ones((5, 7), bool), order) == "1 35"
    assert not rle.decode("", (5, 7), order).any()
    assert rle.decode("1 35", (5, 7), order).all()


def test_kaggle_convention_is_column_major_and_one_based():
    mask = np.array([[1, 0, 0], [1, 0, 1]], dtype=bool)
    # Column-major flattening: [1, 1, 0, 0, 0, 1] -> runs start at pixel 1 (len 2) and 6 (len 1).
    assert rle.encode(mask) == "1 2 6 1"
    # Row-major: [1, 0, 0, 1, 0, 1] -> 1 1, 4 1, 6 1.
    assert rle.encode(mask, "C") == "1 1 4 1 6 1"


def test_non_bool_input_counts_non_zero_as_foreground():
    assert rle.encode(np.array([[0, 255], [7, 0]], dtype=np.uint8)) == "2 2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 2 3", "odd number"),
        ("1 x", "non-integer"),
        ("0 2", "does not fit"),
        ("5 3", "does not fit"),
        ("1 0", "does not fit"),
    ],
)
def test_malformed_strings_are_refused(text, message):
    with pytest.raises(DataError, match=message):
        rle.decode(text, (2, 3))


def test_csv_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(f"patch_{i}.tif_Cloud", rng.random((6, 9)) > 0.5) for i in range(3)]
    rows.append(("empty.tif_Cloud", np.zeros((6, 9), bool)))
    path = tmp_path / "labels.csv"
    rle.write_csv(path, rows)
    assert path.read_text().splitlines()[0] == "Image_Label,EncodedPixels"
    read = list(rle.read_csv(path))
    assert [label for label, _ in read] == [label for label, _ in rows]
    for (_, text), (_, mask) in zip(read, rows, strict=True):
        assert np.array_equal(rle.decode(text, mask.shape), mask)


def test_csv_with_wrong_header_names_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("name,rle\na,1 2\n")
    with pytest.raises(DataError, match="bad.csv.*expected header"):
        list(rle.read_csv(path))
