"""``benchmarks/train_step.py --quick``: fp32 and bf16 training steps, interleaved."""

import pytest


def test_train_step_quick_writes_results(run_quick) -> None:
    doc = run_quick("train_step", "--no-demo")
    assert "demo" not in doc
    assert doc["auto_precision"] in ("bf16", "fp32")
    (row,) = doc["rows"]
    assert row["model"] == "r34"
    for precision in ("f32", "bf16"):
        assert len(row["seconds"][precision]) == doc["config"]["repeats"]
        assert all(s > 0 for s in row["seconds"][precision])
    assert row["bf16_speedup"] == pytest.approx(row["median_s"]["f32"] / row["median_s"]["bf16"])
    # The bf16 steps really ran under autocast; the fp32 ones did not.
    assert row["logits_dtype"] == {"f32": "float32", "bf16": "bfloat16"}


@pytest.mark.slow
def test_train_step_quick_times_the_demo_training(run_quick) -> None:
    doc = run_quick("train_step")
    demo = doc["demo"]
    assert demo["precision"] == {"fp32": "fp32", "auto": doc["auto_precision"]}
    assert all(len(t) == 1 and t[0] > 0 for t in demo["seconds"].values())
    assert demo["auto_speedup"] == pytest.approx(
        demo["median_s"]["fp32"] / demo["median_s"]["auto"]
    )
