"""``benchmarks/engine.py --quick`` runs end to end and writes results of the right shape.

The figures themselves are never asserted: this machine is shared, and the benchmark's targets
are printed as PASS/MISS for a person to read. The synthetic scenes and the random r34 model are
cached in the system temp folder (the script's default), so only the first run pays for them.
"""

from __future__ import annotations

STAGES = {"read", "infer", "blend", "write", "wall"}


def positive(value: float) -> bool:
    return isinstance(value, (int, float)) and value > 0


def test_engine_quick_writes_results(run_quick):
    doc = run_quick("engine")

    eff = doc["efficiency"]
    assert len(eff["engine"]) == len(eff["model_only"]) == doc["config"]["repeats"] >= 2
    assert eff["batches"] >= eff["tiles_run"] / doc["config"]["batch"] > 0
    for value in (eff["efficiency"], eff["efficiency_child"], eff["reread_seconds"]):
        assert positive(value)
    for run in eff["engine"]:
        assert set(run["seconds"]) == STAGES
        assert all(positive(run["seconds"][k]) for k in ("read", "infer", "write", "wall"))
        assert positive(run["child_seconds"]) and positive(run["peak_rss_mib"])
    for run in eff["model_only"]:
        assert positive(run["seconds"]) and positive(run["peak_rss_mib"])

    sweep = doc["sweep"]
    assert [s["size"] for s in sweep] == sorted(doc["config"]["sizes"])
    for entry in sweep:
        assert positive(entry["megapixels_per_second"]) and positive(entry["peak_rss_mib"])
        assert set(entry["seconds"]) == STAGES and positive(entry["seconds"]["wall"])
    strips = doc["strips"]
    assert len({s["width"] for s in strips}) == 1 and len({s["height"] for s in strips}) == 2
    assert all(positive(s["peak_rss_mib"]) for s in strips)
    targets = doc["targets"]
    for key in ("rss_ratio", "rss_height_ratio", "rss_max_mib"):
        assert positive(targets[key])
    assert isinstance(targets["efficiency_pass"], bool)

    versus = doc["providers"]
    assert set(versus["runs"]) == {"cpu", "openvino"}
    assert all(len(runs) == doc["config"]["provider_repeats"] for runs in versus["runs"].values())
    assert positive(versus["speedup_end_to_end"]) and positive(versus["speedup_wall"])
    assert {r["precision"] for r in versus["runs"]["cpu"]} == {"fp32"}
    # auto: bf16 only once proven for the model (random weights here have no proof), else f32
    assert versus["precision"] in {"bf16", "fp32", "f32"}

    plans = doc["tile_plans"]
    assert {p["provider"] for p in plans} == {"cpu", "openvino", "tensorrt"}
    for plan in plans:
        # The plan computes at least every valid pixel once, and picks its best candidate.
        assert plan["ratio"] >= 1.0 and plan["tile"] % 32 == 0, plan
        assert plan["ratio"] <= min(plan["candidates"].values()) + 1e-3, plan
