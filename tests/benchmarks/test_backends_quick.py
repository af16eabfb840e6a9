"""``benchmarks/backends.py --quick`` runs end to end and writes well-formed results.

Only the structure is checked, never the figures: they depend on the machine and its load.
Marked slow (40 s here, the longest test): ``make test`` must stay under ten minutes from a
clean clone; ``make test-all`` runs it.
"""

import pytest

CPU_PATHS = {"torch_eager_fp32", "torch_channels_last_fp32", "torch_channels_last_bf16",
             "torch_compile_bf16", "ort_cpu_fp32", "ort_cpu_int8", "openvino_f32",
             "openvino_bf16"}  # fmt: skip
#: --quick does not compile (a minute per model): that path must say so.
NOT_ASKED = {"torch_compile_bf16"}
GPU_PATHS = {"torch_cuda_fp32", "torch_cuda_fp16", "ort_cuda_fp32", "ort_cuda_fp16",
             "ort_tensorrt_fp16"}  # fmt: skip
FIGURES = (
    "median_s",
    "mp_per_s",
    "gflop_per_s",
    "ceiling_fraction",
    "speedup_vs_eager",
    "speedup_vs_ort_fp32",
)
PRECISIONS = {"fp32", "bf16", "int8"}


@pytest.mark.slow
def test_backends_quick(run_quick) -> None:
    doc = run_quick("backends")
    assert doc["models"]["r34"]["batches"]
    machine = doc["machine"]
    assert "torch" in machine["versions"]
    assert set(doc["config"]["paths"]) == CPU_PATHS | GPU_PATHS

    assert set(doc["models"]) == {"r18", "r34"}
    for name, model in doc["models"].items():
        assert model["weights"] == "random", name
        assert model["flops_per_tile"] > 0 and model["parameters"] > 0
        assert 0 <= model["int8_agreement"]["share"] <= 1
        assert model["int8_agreement"]["valid_pixels"] > 0
        assert set(model["batches"]) == {"1", "2"}
        for batch in model["batches"].values():
            ceilings = batch["ceilings_gflops"]
            assert set(ceilings) == PRECISIONS
            for ceiling in ceilings.values():
                assert len(ceiling) == doc["config"]["repeats"] and min(ceiling) > 0
            assert set(batch["paths"]) == CPU_PATHS | GPU_PATHS
            for path, row in batch["paths"].items():
                if "skipped" in row:  # only GPU paths and compile, and with a reason
                    assert path in GPU_PATHS | NOT_ASKED and row["skipped"], path
                    continue
                assert row["precision"] in PRECISIONS | {"fp16"}, path
                assert len(row["seconds"]) == doc["config"]["repeats"]
                assert min(row["seconds"]) > 0 and row["spread"] >= 0
                assert all(row[f] > 0 for f in FIGURES), (name, path, row)
            assert batch["paths"]["torch_compile_bf16"] == {"skipped": "not asked"}
            assert batch["paths"]["openvino_bf16"]["precision"] == "bf16"
            if machine["gpu"] is None:
                assert all(batch["paths"][p] == {"skipped": "no GPU"} for p in GPU_PATHS)
