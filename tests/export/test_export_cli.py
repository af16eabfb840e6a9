"""``cloudseg-export``: files written whole or not at all, default paths, one-line errors.

One real export (r34, random init, ``--tile 64``, ``--fp16``) runs once per module; the refusal
tests reuse its graph (``to_onnx`` patched) so that they cost a parity check, not an export.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torchvision
from click.testing import CliRunner, Result

from cloudseg.card import METADATA_KEY, read, write_json
from cloudseg.export import parity, pipeline
from cloudseg.export.cli import main
from cloudseg.export.onnx_export import declared_shape
from cloudseg.export.sources import load_source
from cloudseg.home import default_model_path

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLOUDSEG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


class Lines(logging.Handler):
    """The export log (under pytest, the CLI's logging.basicConfig finds handlers and stays
    out of the way, so the lines are collected here rather than in the CliRunner output)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result, list[str]]:
    """``cloudseg-export --model r34 --random-init --tile 64 --fp16`` into a default home."""
    home = tmp_path_factory.mktemp("home")
    lines = Lines()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLOUDSEG_HOME", str(home))
        logger = logging.getLogger("cloudseg.export")
        mp.setattr(logger, "level", logging.INFO)
        logger.addHandler(lines)
        try:
            result = invoke("--model", "r34", "--random-init", "--tile", 64, "--fp16")
        finally:
            logger.removeHandler(lines)
        fp32 = default_model_path("r34")
    assert result.exit_code == 0, result.output
    return fp32, result, lines.lines


def test_export_writes_default_files_with_cards(exported):
    fp32, result, lines = exported
    fp16 = fp32.with_name("cloudseg-r34-fp16.onnx")
    assert len(lines) == 2  # one line per file
    assert result.stdout.split() == [str(fp32), str(fp16)]
    assert sorted(p.name for p in fp32.parent.iterdir()) == [fp16.name, fp32.name]  # no .part
    for path, variant in ((fp32, "fp32"), (fp16, "fp16")):
        card = read(path)
        assert card.extra["export"]["variant"] == variant
        assert card.tile_size == 64 and card.training["random_init"] is True
        assert card.fixed_size  # --tile 64 fixed the graph's size: the engine must not plan others
        assert f"{variant} -> {path}: passed in" in lines[variant == "fp16"]
    assert read(fp16).extra["export"]["agreement"]["share"] >= 0.995


def test_tile_fixes_height_and_width_and_fp16_keeps_float32_io(exported):
    fp32, _, _ = exported
    for name, weights in (("cloudseg-r34.onnx", FLOAT), ("cloudseg-r34-fp16.onnx", FLOAT16)):
        model = onnx.load(str(fp32.with_name(name)))
        (image,), (logits,) = model.graph.input, model.graph.output
        assert declared_shape(image) == ["batch", 4, 64, 64]
        assert declared_shape(logits) == ["batch", 2, 64, 64]
        assert image.type.tensor_type.elem_type == logits.type.tensor_type.elem_type == FLOAT
        big = [t for t in model.graph.initializer if np.prod(t.dims) > 1000]
        assert big and {t.data_type for t in big} == {weights}
        assert [p.key for p in model.metadata_props].count(METADATA_KEY) == 1


@pytest.fixture
def cached_graph(exported, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the pipeline reuse the module's exported graph (seed 0 weights) instead of
    exporting again: a model of another seed then genuinely fails parity."""
    model = onnx.load(str(exported[0]))
    del model.metadata_props[:]
    monkeypatch.setattr(pipeline, "to_onnx", lambda *a, **k: model)


def test_failed_parity_leaves_nothing_and_keeps_the_old_file(cached_graph, tmp_path, caplog):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"the previous model")
    with caplog.at_level(logging.INFO, logger="cloudseg.export"):
        result = invoke(
            "--model", "r34", "--random-init", "--seed", 1, "--tile", 64, "--out", out,
            "--overwrite",
        )  # fmt: skip
    one_error_line(result, "fp32 export refused", "max |logit diff|")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "cloudseg.export"]
    assert "fp32" in line and "REFUSED" in line and "mask mismatches" in line
    assert out.read_bytes() == b"the previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_refused_variant_keeps_the_fp32_file(cached_graph, tmp_path, monkeypatch):
    monkeypatch.setattr(parity, "MIN_AGREEMENT", 1.01)  # no variant can pass
    out = tmp_path / "m.onnx"
    result = invoke("--model", "r34", "--random-init", "--tile", 64, "--out", out, "--fp16")
    one_error_line(result, "m-fp16.onnx: fp16 export refused", "mask agreement")
    assert read(out).extra["export"]["variant"] == "fp32"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_existing_output_is_refused_before_any_work(tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep me")
    result = invoke("--model", "r34", "--random-init", "--out", out)
    one_error_line(result, str(out), "exists; pass --overwrite")
    assert out.read_bytes() == b"keep me"


def test_existing_variant_is_refused_before_the_fp32_file_is_written(tmp_path):
    out, variant = tmp_path / "m.onnx", tmp_path / "m-fp16.onnx"
    variant.write_bytes(b"keep me")
    result = invoke("--model", "r34", "--random-init", "--out", out, "--fp16")
    one_error_line(result, str(variant), "exists; pass --overwrite")
    assert variant.read_bytes() == b"keep me" and not out.exists()


def test_wrong_architecture_checkpoint(tmp_path):
    checkpoint = tmp_path / "resnet34.pth"  # an ImageNet classifier, not the UNet
    torch.save(torchvision.models.resnet34().state_dict(), checkpoint)
    write_json(load_source("r34", random_init=True, tile=64).card, tmp_path / "card.json")
    result = invoke("--model", "r34", "--checkpoint", checkpoint, "--out", tmp_path / "m.onnx")
    one_error_line(result, str(checkpoint), "does not fit this architecture")
    assert not (tmp_path / "m.onnx").exists()


def test_checkpoint_needs_its_card(tmp_path):
    checkpoint = tmp_path / "best.pth"
    torch.save({}, checkpoint)
    one_error_line(invoke("--model", "r34", "--checkpoint", checkpoint), "no card.json beside it")


def test_card_of_another_model_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_json(load_source("r34", random_init=True, tile=64).card, run / "card.json")
    torch.save({}, run / "best.pth")
    one_error_line(invoke("--model", "r18", "--run", run), "card is for 'cloudseg-r34'")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--model", "r18"], ["no finished r18 run", "cloudseg-train", "--random-init"]),
        (["--model", "r34", "--run", "nowhere"], ["nowhere: no such run folder"]),
        (["--model", "r34", "--random-init", "--int8"], ["--int8 needs --calib DATA_DIR"]),
        (["--model", "r34", "--random-init", "--tile", "100"], ["--tile 100"]),
        (["--model", "r34", "--random-init", "--run", "x"], ["one of --run, --checkpoint"]),
    ],
)
def test_bad_input_is_one_line(args, fragments, home):
    one_error_line(invoke(*args), *fragments)
    assert not (home / "models").exists()


def test_help_has_examples():
    result = invoke("--help")
    assert result.exit_code == 0 and "Examples:" in result.output and "--calib" in result.output


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--fp16"], ["--fp16: for r18 or r34 only", "takes --int8"]),
        (["--tile", 64, "--int8"], ["--tile: for r18 or r34 only"]),
        ([], ["an ONNX model is exported already; give --int8"]),
    ],
)
def test_an_onnx_model_takes_int8_only(home: Path, args: list, fragments: list[str]) -> None:
    model = home.parent / "m.onnx"
    model.write_bytes(b"not read before the options are checked")
    one_error_line(invoke("--model", model, *args), *fragments)


def test_an_unknown_model_is_one_line(home: Path) -> None:
    one_error_line(invoke("--model", "r50", "--int8"), "--model r50: not r18, r34, a named ONNX")


def test_reference_options_are_for_onnx_models_only(home: Path) -> None:
    one_error_line(invoke("--model", "r18", "--keep-float", "encoder"),
                   "--reference and --keep-float are for an ONNX model's int8 variant")  # fmt: skip
