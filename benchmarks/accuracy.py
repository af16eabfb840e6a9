"""Accuracy on real scenes, for every model x provider x precision that loads here.

Every real labelled item in ``../shared/data`` goes through the engine itself
(:func:`cloudseg.engine.in_memory.predict_scene`: the tiles, blending and mask codes
``cloudseg-run`` writes) on each path: ONNX Runtime fp32 (the reference), OpenVINO f32 and bf16,
and the ``-fp16`` / ``-int8`` files of exported models when they exist. Per path:

* against the truth of the 16 L8 Biome tiles: pooled and per-scene Jaccard, precision and recall
  for cloud (and for shadow where the model has a shadow class);
* agreement with the same model in fp32 (ONNX Runtime) on every real scene (the Biome tiles and
  the real USGS products), and the worst scene by name: the bar a path must clear to be chosen
  by ``--precision auto`` (99.5 %, :mod:`cloudseg.engine.proof`);
* for ukis-csmask's models, agreement of cloud with ukis-csmask's own ``CSmask`` given the very
  same reflectance array (its reference implementation) on every real item;
* speed: megapixels per second over the items the model reads, measured in the same run.

    python benchmarks/accuracy.py            # every item, 3 timed rounds
    python benchmarks/accuracy.py --home demo/home   # with make demo's r18 (and its variants)
    python benchmarks/accuracy.py --quick    # 4 Biome tiles, 1 round: the test suite's run
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

#: Paths tried for every model: (label, provider, precision, variant file suffix).
PATHS = (
    ("cpu f32", "cpu", "f32", None),
    # what cloudseg-run does with no --provider and no --precision, on this machine
    ("default (auto)", "auto", "auto", None),
    ("openvino f32", "openvino", "f32", None),
    ("openvino bf16", "openvino", "bf16", None),
    ("cpu fp16 file", "cpu", "f32", "fp16"),
    ("cpu int8 file", "cpu", "f32", "int8"),
)
REFERENCE = "cpu f32"
CLOUD, SHADOW, NODATA = 1, 2, 255


def _models() -> list[tuple[str, Path | None, str]]:
    """``(name, file, what it was trained on)`` of every named model; a model not here has no
    file and says why in the third field."""
    from cloudseg.engine import models

    out = []
    for name in models.NAMED:
        why = models.why_missing(name)
        if why is None:
            path = models.resolve(name)
            out.append((name, path, models.data_origin(path) or "not on its card"))
        else:
            out.append((name, None, why))
    return out


def _cloud38_items(root: Path | None, work: Path, limit: int | None) -> list:
    """The real 38-Cloud patches as 4-band DN GeoTIFFs (one window each for a 384 px tile) with
    their truth beside them: items that DN models (r18, r34) read through the engine."""
    import rasterio
    from rasterio.transform import from_origin

    from cloudseg.bands import valid_pixels
    from cloudseg.data import cloud38, cloud38_read
    from cloudseg.data.reference import ReferenceItem, cloud38_patches_dir

    folder = cloud38_patches_dir(root)
    if folder is None:
        return []
    items = []
    for pid in cloud38.list_patches(folder, "train")[:limit]:
        dn, cloud = cloud38_read.read_patch(folder, "train", pid)
        valid = valid_pixels(dn)
        if not valid.any():
            continue  # in the black margin of its scene: nothing to judge
        profile = {"driver": "GTiff", "height": dn.shape[1], "width": dn.shape[2],
                   "crs": "EPSG:32633", "transform": from_origin(0, 0, 30, 30)}  # fmt: skip
        bands, truth = work / f"{pid.name}.tif", work / f"{pid.name}_truth.tif"
        with rasterio.open(bands, "w", count=4, dtype="uint16", **profile) as dst:
            dst.write(dn)
            dst.descriptions = ("red", "green", "blue", "nir")
        codes = np.where(valid, cloud.astype(np.uint8), NODATA).astype(np.uint8)
        with rasterio.open(truth, "w", count=1, dtype="uint8", **profile) as dst:
            dst.write(codes, 1)
        name = f"38cloud_{pid.scene.split('_')[2]}"  # 38-Cloud's scene path/row
        items.append(ReferenceItem(name, bands, "38cloud-sample", truth))
    return items


def _variant(path: Path, variant: str | None) -> Path | None:
    if variant is None:
        return path
    from cloudseg.home import variant_path

    found = variant_path(path, variant)
    return found if found.is_file() else None


def _truth(item: Any) -> np.ndarray | None:
    import rasterio

    if item.truth is None:
        return None
    with rasterio.open(item.truth) as src:
        return src.read(1)


def _csmask_cloud(scene: Any, level: str) -> tuple[np.ndarray, np.ndarray | None]:
    """CSmask's cloud on the reflectance cloudseg reads for ``scene`` (0 at no data): with its
    own tiling (argmax of its blended classes), and for a scene of exactly one tile, its session
    on that one window (``P(cloud) > 0.5``, cloudseg's rule), else None."""
    from rasterio.windows import Window
    from scipy.special import softmax
    from ukis_csmask.mask import CSmask

    from cloudseg.bands import BANDS, reorder

    kind = "toa_reflectance" if level == "l1c" else "surface_reflectance"
    with scene.open() as reader:
        raw = reader.read(Window(0, 0, scene.width, scene.height))
    img = reorder(scene.to_values(raw, kind), BANDS, ("blue", "green", "red", "nir"))
    img = np.ascontiguousarray(np.moveaxis(img, 0, -1), np.float32)
    cs = CSmask(img, band_order=["blue", "green", "red", "nir"], product_level=level,
                providers=["CPUExecutionProvider"], batch_size=1)  # fmt: skip
    same = None
    if img.shape[:2] == tuple(cs.target_size):
        x = np.moveaxis(cs.img, -1, 0)[None]  # CSmask's normalised image, NCHW as it feeds it
        same = softmax(cs.session.run(None, {cs.input_names: x})[0], axis=1)[0, CLOUD] > 0.5
    return cs.csm[..., 0] == CLOUD, same


def run_path(model: Path, provider: str, precision: str, items: list, rounds: int) -> dict:
    """Masks of every item on one path, and its speed over the Biome tiles."""
    from cloudseg.data.sources import open_any
    from cloudseg.engine.backend import BackendOptions
    from cloudseg.engine.in_memory import predict_scene
    from cloudseg.engine.proof import fits, reference_spec
    from cloudseg.engine.registry import make_backend
    from cloudseg.engine.run import model_card

    card = model_card(model)
    shadow = bool(card.shadow_classes)
    opts = BackendOptions(batch=1, tile=card.tile_size, precision=precision, shadow=shadow)
    backend = make_backend(model, provider, opts)
    try:
        spec = reference_spec(card)
        scenes = [(i, open_any(i.path)) for i in items if fits(card, i)]
        codes = {i.name: predict_scene(s, backend, card, spec).codes for i, s in scenes}
        timed = [s for _, s in scenes]
        seconds = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for scene in timed:
                predict_scene(scene, backend, card, spec)
            seconds.append(time.perf_counter() - t0)
        pixels = sum(s.width * s.height for s in timed)
        speed = pixels / 1e6 / harness.median(seconds) if seconds and pixels else None
        return {"codes": codes, "mp_per_s": speed, "describe": backend.describe()}
    finally:
        backend.close()


def scores(codes: dict[str, np.ndarray], truths: dict[str, np.ndarray], klass: int) -> dict:
    from cloudseg.metrics import Confusion

    per, pooled = {}, Confusion()
    for name, truth in truths.items():
        valid = (truth != NODATA) & (codes[name] != NODATA)
        c = Confusion().add(codes[name] == klass, truth == klass, valid)
        per[name] = c.scores()
        pooled = pooled + c
    return {"pooled": pooled.scores(), "per_scene": per}


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    valid = (a != NODATA) & (b != NODATA)
    return float((a[valid] == b[valid]).mean()) if valid.any() else 1.0


def cloud_agreement(codes: np.ndarray, cloud: np.ndarray) -> float:
    """Share of ``codes``' valid pixels where its cloud equals ``cloud`` (bool)."""
    valid = codes != NODATA
    return float(((codes == CLOUD)[valid] == cloud[valid]).mean()) if valid.any() else 1.0


def measure(args: argparse.Namespace, work: Path) -> dict:
    from cloudseg.data.reference import reference_items

    items = reference_items(args.reference)
    if args.quick:
        biome = [i for i in items if i.group == "biome-l8"]
        # the two snow tiles bf16 flips, and two cloudy ones
        items = [biome[i] for i in (1, 8, 9, 10)] + [i for i in items if i.group != "biome-l8"]
    items += _cloud38_items(args.reference, work, 3 if args.quick else None)
    truths = {i.name: t for i in items if (t := _truth(i)) is not None}
    results: dict[str, Any] = {"items": [i.name for i in items], "models": {}}
    for name, path, origin in _models():
        if args.models and name not in args.models:
            continue
        if path is None:
            results["models"][name] = {"missing": origin}
            continue
        entry: dict[str, Any] = {"file": path.name, "trained_on": origin, "paths": {}}
        masks: dict[str, dict[str, np.ndarray]] = {}
        for label, provider, precision, variant in PATHS:
            file = _variant(path, variant)
            if file is None:
                entry["paths"][label] = {"skipped": f"no {variant} file of {name} here"}
                continue
            try:
                got = run_path(file, provider, precision, items, args.rounds)
            except Exception as exc:  # a path that does not load here is a row saying why
                entry["paths"][label] = {"skipped": " ".join(str(exc).split())[:160]}
                continue
            masks[label] = got["codes"]
            row: dict[str, Any] = {"mp_per_s": got["mp_per_s"],
                                   "provider": got["describe"].get("provider"),
                                   "precision": got["describe"].get("precision")}  # fmt: skip
            mine = {k: v for k, v in truths.items() if k in got["codes"]}
            row["cloud"] = scores(got["codes"], mine, CLOUD)
            if name.startswith("ukis"):
                row["shadow"] = scores(got["codes"], mine, SHADOW)
            entry["paths"][label] = row
        ref = masks.get(REFERENCE)
        entry["items_read"] = len(ref) if ref is not None else 0
        for label, codes in masks.items():
            row = entry["paths"][label]
            if ref is not None:
                agree = {k: agreement(ref[k], codes[k]) for k in codes}
                worst = min(agree, key=agree.__getitem__)
                row["agreement_fp32"] = agree
                row["worst_scene"], row["worst_agreement"] = worst, agree[worst]
        if name.startswith("ukis") and ref is not None:
            from cloudseg.data.sources import open_any

            level = name.split("-")[1]
            tiled, same = {}, {}
            for k in ref:
                theirs, window = _csmask_cloud(open_any(_item(items, k).path), level)
                tiled[k] = cloud_agreement(ref[k], theirs)
                if window is not None:
                    same[k] = cloud_agreement(ref[k], window)
            entry["csmask_agreement"], entry["csmask_same_window"] = tiled, same
        results["models"][name] = entry
    return results


def _item(items: list, name: str) -> Any:
    return next(i for i in items if i.name == name)


def _pct(value: float | None) -> str:
    """Agreement as a percentage with two decimals: 1.0 only where every pixel agrees."""
    return "" if value is None else f"{100 * value:.2f} %"


def _short(name: str) -> str:
    parts = name.split("_")
    return f"{parts[1]}_{parts[2]}" if len(parts) > 2 else name


def render(doc: dict) -> str:
    out = []
    for name, entry in doc["models"].items():
        if "missing" in entry:
            out.append(f"**{name}**: not run, {entry['missing']}\n")
            continue
        read = f"{entry['items_read']} of the {len(doc['items'])} real items give its values"
        out.append(f"**{name}** (`{entry['file']}`, trained on {entry['trained_on']} data): "
                   f"{read}\n")  # fmt: skip
        rows = []
        for label, row in entry["paths"].items():
            if "skipped" in row:
                rows.append([label, "-", "-", "-", "-", "-", "-", f"not run: {row['skipped']}"])
                continue
            cloud = row["cloud"]["pooled"]
            shadow = row.get("shadow", {}).get("pooled", {}).get("jaccard")
            worst = row.get("worst_scene")
            ran = f"{label}: {row['provider']} {row['precision']}" if "auto" in label else label
            rows.append([
                ran, cloud["jaccard"], cloud["precision"], cloud["recall"], shadow,
                _pct(row.get("worst_agreement")), row["mp_per_s"],
                f"worst {_short(worst)}" if worst and row["worst_agreement"] < 1 else "",
            ])  # fmt: skip
        out.append(harness.table(
            ["path", "cloud Jaccard (pooled)", "precision", "recall", "shadow Jaccard",
             "agreement with fp32, worst scene", "MP/s", "note"], rows))  # fmt: skip
        ref = entry["paths"].get(REFERENCE, {})
        per = ref.get("cloud", {}).get("per_scene", {})
        if per:
            cs = entry.get("csmask_agreement", {})
            one = entry.get("csmask_same_window", {})
            lines = []
            for scene, s in per.items():
                fast = {
                    lab: r.get("agreement_fp32", {}).get(scene)
                    for lab, r in entry["paths"].items()
                    if "agreement_fp32" in r and lab != REFERENCE
                }
                shares = (one.get(scene), cs.get(scene), *fast.values())
                lines.append([_short(scene), s["jaccard"], s["precision"], s["recall"],
                              *map(_pct, shares)])  # fmt: skip
            for scene, value in cs.items():
                if scene not in per:
                    fast = {
                        lab: r.get("agreement_fp32", {}).get(scene)
                        for lab, r in entry["paths"].items()
                        if "agreement_fp32" in r and lab != REFERENCE
                    }
                    lines.append([_short(scene), None, None, None,
                                  *map(_pct, (one.get(scene), value, *fast.values()))])  # fmt: skip
            labels = [lab for lab, r in entry["paths"].items()
                      if "agreement_fp32" in r and lab != REFERENCE]  # fmt: skip
            out.append(
                f"\nPer scene, {REFERENCE} against the truth; agreement of its cloud with "
                "CSmask's on the same reflectance (on the one 256 px window both see, and with "
                "CSmask's own tiling); the other paths' agreement with fp32:\n"
            )
            out.append(
                harness.table(
                    [
                        "scene",
                        "Jaccard",
                        "precision",
                        "recall",
                        "= CSmask, same window",
                        "= CSmask, its tiling",
                        *labels,
                    ],
                    lines,
                )
            )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", type=Path, default=None, help="real data folder (shared/data)")
    p.add_argument("--models", nargs="+", default=None, help="only these named models")
    p.add_argument("--home", type=Path, default=None,
                   help="$CLOUDSEG_HOME with exported r18/r34 (make demo's demo/home)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=3, help="timed rounds over the Biome tiles")
    p.add_argument("--out", type=Path, default=harness.RESULTS_DIR, help="results folder")
    p.add_argument("--quick", action="store_true", help="4 Biome tiles, 1 round")
    args = p.parse_args(argv)
    if importlib.util.find_spec("ukis_csmask") is None:
        print("benchmarks/accuracy.py needs ukis-csmask (make install)", file=sys.stderr)
        return 2
    if args.quick:
        args.rounds = 1
    if args.home is not None:  # named on the command line, so the results say which models ran
        os.environ["CLOUDSEG_HOME"] = str(args.home.resolve())
    with tempfile.TemporaryDirectory(prefix="cloudseg-accuracy-") as tmp:
        results = measure(args, Path(tmp))
    for entry in results["models"].values():
        for row in entry.get("paths", {}).values():
            row.pop("describe", None)
    path = harness.write_results("accuracy", results, render, args.out)
    print((args.out / "accuracy.md").read_text() + f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
