"""``benchmarks/accuracy.py --quick`` runs every path on real items and writes well-formed
results: every named model here, each path either measured (scores, agreement with fp32 and its
worst scene, speed) or skipped with its reason. The figures are checked where they are facts of
the real data, not of the machine: fp32 on another runtime agrees with ONNX Runtime fp32, and
bf16 (OpenVINO, this model, the snow tiles) is caught failing the 99.5 % bar."""

from __future__ import annotations

import pytest

pytest.importorskip("ukis_csmask")

from cloudseg.data.reference import default_root  # noqa: E402

pytestmark = pytest.mark.skipif(default_root() is None, reason="no real reference data")


def test_accuracy_quick_writes_results(run_quick) -> None:
    doc = run_quick("accuracy", "--models", "ukis-l1c")
    assert set(doc["models"]) == {"ukis-l1c"}
    entry = doc["models"]["ukis-l1c"]
    assert entry["trained_on"] == "real"
    paths = entry["paths"]
    assert set(paths) == {"cpu f32", "default (auto)", "openvino f32", "openvino bf16",
                          "cpu fp16 file", "cpu int8 file"}  # fmt: skip
    # the default path on the real scenes: the precision auto chose agrees with fp32 everywhere
    default = paths["default (auto)"]
    assert default["precision"] in ("f32", "fp32") and default["worst_agreement"] >= 0.995
    ran = {k: v for k, v in paths.items() if "skipped" not in v}
    assert "cpu f32" in ran and all(v["mp_per_s"] > 0 for v in ran.values())
    for row in ran.values():
        assert 0 <= row["cloud"]["pooled"]["jaccard"] <= 1
        assert set(row["agreement_fp32"]) == set(paths["cpu f32"]["agreement_fp32"])
    assert paths["cpu f32"]["worst_agreement"] == 1.0
    # the same network on one 256 px window: CSmask's own session gives cloudseg's cloud
    assert min(entry["csmask_same_window"].values()) >= 0.999
    if "openvino f32" in ran:
        assert ran["openvino f32"]["worst_agreement"] >= 0.995
    if "openvino bf16" in ran and ran["openvino bf16"]["precision"] == "bf16":
        assert ran["openvino bf16"]["worst_agreement"] < 0.995
