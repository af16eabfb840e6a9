"""ukis-csmask's own ``CSmask`` against ``cloudseg-run`` on the same model and the same scene.

Both sides run ukis-csmask's 4-band Level-1 model (``model_4b_l1c.onnx``; cloudseg through the
sidecar card of ``cloudseg.engine.foreign.ukis_csmask``) over one synthetic Landsat 8 scene
folder, each in its own child process so its peak RSS is its own. Both are timed end to end as
a user meets them (interpreter start, reading the four band files, DN to TOA reflectance from the
MTL, model load, inference, writing the mask): a ukis user has to read and convert the scene too.
The time inside the tool is reported beside it: ``CSmask(...)`` alone (its session creation
included) and the engine's ``seconds.wall`` from the run summary (model load excluded).

Same batch size and thread count on both sides: ONNX Runtime's CPU provider with
``intra_op_num_threads = os.cpu_count()`` (cloudseg's choice; ukis's default 0 means the same on
a machine without hyper-threading, and passing it makes that so everywhere).

Mask agreement is the share of valid pixels where cloudseg's mask (1 = cloud) equals
``CSmask.csm == 1``. It is bounded by this model's sensitivity to the window it sees: the two tools
tile differently, so CSmask's agreement with itself when its grid moves by 10 px is given beside it.

    python benchmarks/peer.py                     # 4096 px, 5 repeats, sweep 1024 2048 4096
    python benchmarks/peer.py --quick             # 512 px, 2 repeats: the test suite's run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

# Run as a script: harness sits beside it. The parent stays light (no numpy) all the same.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

UKIS_BANDS = ("blue", "green", "red", "nir")
CLOUD = 1  # CSmask.csm classes: 0 background, 1 cloud, 2 cloud shadow
SEED, CLOUD_FRACTION = 5, 0.3
SHIFT = 10  # px the ukis grid moves for its self-agreement
TARGET_SIZE, TARGET_RSS_SHARE = 4096, 0.2  # the issue: faster, <= 1/5 of ukis's peak RSS at 4096
INSTALL = 'ukis-csmask is not installed: .venv/bin/pip install --no-deps "ukis-csmask>=1.0"'
SELF = str(Path(__file__).resolve())


# --- children: each runs in its own process (python peer.py --_ukis-child / --_agreement) ---


def _ukis_image(folder: Path, crop: int | None = None):
    """The (rows, cols, 4) float32 TOA reflectance CSmask wants, in ukis's band order, read as a
    ukis user would: one rasterio read per band file, DN -> TOA with the MTL's coefficients
    (cloudseg's helper, so both tools see identical pixels). One band at a time, so nothing but
    the image itself is held."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from cloudseg.data.landsat import open_scene
    from cloudseg.data.mtl import toa_reflectance

    scene = open_scene(folder)
    h, w = scene.shape if crop is None else (min(crop, scene.height), min(crop, scene.width))
    img = np.empty((h, w, len(UKIS_BANDS)), np.float32)
    for i, band in enumerate(UKIS_BANDS):
        with rasterio.open(scene.band_paths[band]) as src:
            dn = src.read(1, window=Window(0, 0, w, h))
        img[..., i] = toa_reflectance(dn[None], [band], scene.mtl)[0]
    return scene, img


def _csm(img, batch: int):
    from ukis_csmask.mask import CSmask

    return CSmask(
        img,  # not modified: CSmask normalises its own band-reordered copy
        band_order=list(UKIS_BANDS),
        product_level="l1c",
        intra_op_num_threads=os.cpu_count() or 0,
        providers=["CPUExecutionProvider"],
        batch_size=batch,
    ).csm[..., 0]


def ukis_child(folder: Path, out_tif: Path, batch: int) -> None:
    """Read, convert, CSmask, write the csm as a GeoTIFF; print the stage seconds as JSON."""
    import rasterio

    t0 = time.perf_counter()
    scene, img = _ukis_image(folder)
    t1 = time.perf_counter()
    csm = _csm(img, batch)
    t2 = time.perf_counter()
    del img
    profile = scene.profile()
    # nodata None: 0 is ukis's "background" class, not fill.
    profile.update(dtype="uint8", count=1, nodata=None, compress="deflate")
    with rasterio.open(out_tif, "w", **profile) as dst:
        dst.write(csm, 1)
    t3 = time.perf_counter()
    print(json.dumps({"read_toa": t1 - t0, "csmask": t2 - t1, "write": t3 - t2}))


def agreement_child(folder: Path, ukis_tif: Path, ours_tif: Path, batch: int, crop: int) -> None:
    """Agreement of the two masks on valid pixels, and CSmask's agreement with itself when its
    tile grid moves by SHIFT px (on the top-left ``crop`` x ``crop`` px); print as JSON."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from cloudseg.bands import valid_pixels
    from cloudseg.data.landsat import open_scene

    scene = open_scene(folder)
    with scene.open() as reader:
        valid = valid_pixels(reader.read(Window(0, 0, scene.width, scene.height)))
    with rasterio.open(ours_tif) as a, rasterio.open(ukis_tif) as b:
        ours, theirs = a.read(1) == 1, b.read(1) == CLOUD

    def agree(x, y, v) -> float:
        return float(np.mean(x[v] == y[v]))

    _, img = _ukis_image(folder, crop)
    h, w = img.shape[:2]
    base = _csm(img, batch) == CLOUD
    moved = _csm(img[SHIFT:, SHIFT:], batch) == CLOUD
    v = valid[SHIFT:h, SHIFT:w]
    out = {
        "cloudseg_vs_csmask": agree(ours, theirs, valid),
        "valid_pixels": int(valid.sum()),
        "cloud_share_cloudseg": float(ours[valid].mean()),
        "cloud_share_csmask": float(theirs[valid].mean()),
        "crop": [h, w],
        "cloudseg_vs_csmask_on_crop": agree(ours[:h, :w], theirs[:h, :w], valid[:h, :w]),
        "csmask_self_shifted_on_crop": agree(moved, base[SHIFT:, SHIFT:], v),
        "shift_px": SHIFT,
    }
    print(json.dumps(out))


# --- parent: scenes, runs, tables ---


def scene_folder(scenes_dir: Path, size: int) -> Path:
    return harness.synthetic_scene(scenes_dir, size, SEED, CLOUD_FRACTION)


def run_ukis(folder: Path, work: Path, batch: int) -> dict:
    out_tif = work / f"ukis-{folder.name}.tif"
    r = harness.run_with_peak_rss(
        harness.python_cmd(SELF, "--_ukis-child", str(folder), str(out_tif), "--batch", str(batch))
    )
    stages = json.loads(r["stdout"].strip().splitlines()[-1])
    return {"seconds": r["seconds"], "peak_rss_mib": r["peak_rss_mib"],
            "inner_seconds": stages["csmask"], "read_toa_seconds": stages["read_toa"],
            "write_seconds": stages["write"], "mask": str(out_tif)}  # fmt: skip


def run_cloudseg(folder: Path, work: Path, model: Path, batch: int) -> dict:
    out = work / f"cloudseg-{folder.name}"
    cmd = [*harness.cloudseg("run"), folder, "--model", model, "--out", out, "--batch", batch,
           "--provider", "cpu", "--quiet", "--overwrite"]  # fmt: skip
    r = harness.run_with_peak_rss(cmd)
    summary = json.loads(next(out.glob("*_summary.json")).read_text())
    return {"seconds": r["seconds"], "peak_rss_mib": r["peak_rss_mib"],
            "inner_seconds": summary["seconds"]["wall"], "overlap": summary["overlap"],
            "mask": str(next(out.glob("*_cloudmask.tif")))}  # fmt: skip


def medians(runs: list[dict]) -> dict:
    keys = [k for k, v in runs[0].items() if isinstance(v, float)]
    return {k: harness.median([r[k] for r in runs]) for k in keys} | {
        "seconds_spread": harness.spread([r["seconds"] for r in runs])
    }


def timed(args: argparse.Namespace, folder: Path, work: Path, model: Path) -> dict:
    """Interleaved repeats (ukis, cloudseg, ukis, ...) after a warm-up round; every run and
    the medians. interleaved() gives the order; the figures are the children's own."""
    runs: dict[str, list[dict]] = {"ukis": [], "cloudseg": []}
    cases = {
        "ukis": lambda: runs["ukis"].append(run_ukis(folder, work, args.batch)),
        "cloudseg": lambda: runs["cloudseg"].append(run_cloudseg(folder, work, model, args.batch)),
    }
    harness.interleaved(cases, repeats=args.repeats, warmup=args.warmup)
    out = {}
    for side, side_runs in runs.items():
        side_runs = side_runs[args.warmup :]  # drop the warm-up round
        med = medians(side_runs)
        med["megapixels_per_second"] = args.size**2 / 1e6 / med["seconds"]
        out[side] = {"runs": side_runs, "median": med}
    return out


def agreement(folder: Path, ukis_mask: str, cloudseg_mask: str, batch: int, crop: int) -> dict:
    cmd = harness.python_cmd(
        SELF, "--_agreement", str(folder), ukis_mask, cloudseg_mask,
        "--batch", str(batch), "--self-crop", str(crop),
    )  # fmt: skip
    return json.loads(harness.run_with_peak_rss(cmd)["stdout"].strip().splitlines()[-1])


def sweep(args: argparse.Namespace, work: Path, model: Path, med: dict) -> list[dict]:
    """Peak RSS and seconds per scene size, one run each; the main size reuses its medians."""
    rows = []
    for size in args.sizes:
        if size == args.size:
            one, reused = med, True
        else:
            folder = scene_folder(args.scenes_dir, size)
            one = {
                "ukis": run_ukis(folder, work, args.batch),
                "cloudseg": run_cloudseg(folder, work, model, args.batch),
            }
            reused = False
        row = {"size": size, "megapixels": size**2 / 1e6, "reused": reused}
        for side in ("ukis", "cloudseg"):
            row[f"{side}_seconds"] = one[side]["seconds"]
            row[f"{side}_peak_rss_mib"] = one[side]["peak_rss_mib"]
        rows.append(row)
    return rows


def measure(args: argparse.Namespace, work: Path, model: Path) -> dict:
    folder = scene_folder(args.scenes_dir, args.size)
    sides = timed(args, folder, work, model)
    u, c = sides["ukis"]["median"], sides["cloudseg"]["median"]
    ratios = {
        "wall_ukis_over_cloudseg": u["seconds"] / c["seconds"],
        "inner_ukis_over_cloudseg": u["inner_seconds"] / c["inner_seconds"],
        "peak_rss_cloudseg_over_ukis": c["peak_rss_mib"] / u["peak_rss_mib"],
    }
    targets = {
        "applies": args.size == TARGET_SIZE,
        "faster": c["seconds"] < u["seconds"],
        "rss_at_most_a_fifth": ratios["peak_rss_cloudseg_over_ukis"] <= TARGET_RSS_SHARE,
    }
    last = {side: sides[side]["runs"][-1]["mask"] for side in sides}
    agree = agreement(
        folder, last["ukis"], last["cloudseg"], args.batch, min(args.self_crop, args.size)
    )
    # A bare interpreter started from this parent: the floor any child's peak RSS can show.
    bare = harness.run_with_peak_rss(harness.python_cmd("-c", "pass"))["peak_rss_mib"]
    return {
        "scene": {
            "size": args.size,
            "megapixels": args.size**2 / 1e6,
            "seed": SEED,
            "cloud_fraction": CLOUD_FRACTION,
            "folder": str(folder),
        },
        "settings": {
            "batch": args.batch,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "threads": os.cpu_count(),
            "provider": "CPUExecutionProvider",
            "cloudseg_overlap_px": sides["cloudseg"]["runs"][0]["overlap"],
            "ukis_overlap": "0.2 of 256 (51 px)",
            "ukis_version": version("ukis-csmask"),
        },
        **sides,
        "ratios": ratios,
        "targets": targets,
        "agreement": agree,
        "sweep": sweep(args, work, model, {s: sides[s]["median"] for s in sides}),
        "bare_python_peak_rss_mib": bare,
    }


def render(res: dict) -> str:
    u, c, ratio, t, a = (res[k] for k in ("ukis", "cloudseg", "ratios", "targets", "agreement"))
    u, c = u["median"], c["median"]
    size = res["scene"]["size"]
    main = harness.table(
        ["tool", "end to end s", "spread", "MP/s", "in-tool s", "peak RSS MiB"],
        [["ukis-csmask CSmask", u["seconds"], u["seconds_spread"], u["megapixels_per_second"],
          u["inner_seconds"], u["peak_rss_mib"]],
         ["cloudseg-run", c["seconds"], c["seconds_spread"], c["megapixels_per_second"],
          c["inner_seconds"], c["peak_rss_mib"]],
         ["ratio", f"ukis / cloudseg {ratio['wall_ukis_over_cloudseg']:.3g}", "", "",
          f"{ratio['inner_ukis_over_cloudseg']:.3g}",
          f"cloudseg / ukis {ratio['peak_rss_cloudseg_over_ukis']:.3g}"]],
    )  # fmt: skip
    note = "" if t["applies"] else f" (the targets are for {TARGET_SIZE} px; this run is {size})"
    verdict = {True: "PASS", False: "MISS"}
    goals = harness.table(
        ["target" + note, "measured", ""],
        [["cloudseg faster end to end", f"{ratio['wall_ukis_over_cloudseg']:.3g}x",
          verdict[t["faster"]]],
         ["cloudseg peak RSS <= 1/5 of ukis's", f"{ratio['peak_rss_cloudseg_over_ukis']:.3g}",
          verdict[t["rss_at_most_a_fifth"]]]],
    )  # fmt: skip
    h, w = a["crop"]
    agree = harness.table(
        ["mask agreement (valid pixels)", "share"],
        [[f"cloudseg vs CSmask, whole {size} px scene", a["cloudseg_vs_csmask"]],
         [f"cloudseg vs CSmask, top-left {h} x {w} px", a["cloudseg_vs_csmask_on_crop"]],
         [f"CSmask vs itself, grid moved {a['shift_px']} px, top-left {h} x {w} px",
          a["csmask_self_shifted_on_crop"]],
         ["cloud share: cloudseg / CSmask",
          f"{a['cloud_share_cloudseg']:.3g} / {a['cloud_share_csmask']:.3g}"]],
    )  # fmt: skip
    sweep = harness.table(
        ["scene px", "MP", "ukis s", "ukis peak RSS MiB", "cloudseg s", "cloudseg peak RSS MiB",
         "RSS cloudseg / ukis"],
        [[f"{s['size']}{' *' if s['reused'] else ''}", s["megapixels"], s["ukis_seconds"],
          s["ukis_peak_rss_mib"], s["cloudseg_seconds"], s["cloudseg_peak_rss_mib"],
          s["cloudseg_peak_rss_mib"] / s["ukis_peak_rss_mib"]] for s in res["sweep"]],
    )  # fmt: skip
    st = res["settings"]
    warm = f"after {st['warmup']} warm-up round" if st["warmup"] else "without warm-up"
    return (
        f"Same model (ukis-csmask {st['ukis_version']} model_4b_l1c), same synthetic {size} x "
        f"{size} px scene, batch {st['batch']}, {st['threads']} ORT threads each; each tool in its "
        "own process, end to end (start, read, TOA, model load, inference, write); median of "
        f"{st['repeats']} interleaved repeats {warm}. In-tool s: `CSmask(...)` alone (session "
        "creation included) vs the engine's `seconds.wall` (model load excluded).\n\n"
        f"{main}\n{goals}\n{agree}\nMemory against scene size (one run each; * = the medians "
        f"above; a bare interpreter started the same way peaks at "
        f"{res['bare_python_peak_rss_mib']:.0f} MiB):\n\n{sweep}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=TARGET_SIZE, help="scene side, px (default 4096)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096],
                   help="scene sides of the memory sweep, one run each")  # fmt: skip
    p.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up")
    p.add_argument(
        "--batch",
        type=int,
        default=1,
        help="tiles per inference call, both tools (both default to 1)",
    )
    p.add_argument(
        "--self-crop",
        type=int,
        default=2048,
        help="side of the top-left crop for CSmask's self-agreement (default 2048)",
    )
    p.add_argument("--out", type=Path, default=harness.RESULTS_DIR, help="results folder")
    p.add_argument("--scenes-dir", type=Path, default=harness.SCENE_CACHE,
                   help="cache of synthetic scene folders")  # fmt: skip
    p.add_argument(
        "--quick", action="store_true", help="512 px, 2 repeats, no warm-up, sweep 256 512"
    )
    p.add_argument("--_ukis-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    p.add_argument("--_agreement", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if importlib.util.find_spec("ukis_csmask") is None:
        print(INSTALL, file=sys.stderr)
        return 2
    if args._ukis_child:
        ukis_child(*args._ukis_child, args.batch)
        return 0
    if args._agreement:
        agreement_child(*args._agreement, args.batch, args.self_crop)
        return 0
    args.warmup = 1
    if args.quick:  # a smoke run for the test suite: no warm-up, a cheap self-agreement crop
        args.size, args.repeats, args.sizes = 512, 2, [256, 512]
        args.self_crop, args.warmup = 300, 0
    with tempfile.TemporaryDirectory(prefix="cloudseg-peer-") as tmp:
        work = Path(tmp)
        # In a child too: importing cloudseg here would raise the parent's RSS floor.
        installed = harness.run_with_peak_rss(harness.python_cmd(
            "-m", "cloudseg.engine.foreign.ukis_csmask", str(work / "models")))  # fmt: skip
        model = Path(installed["stdout"].splitlines()[0])
        results = measure(args, work, model)
    for side in ("ukis", "cloudseg"):
        for run in results[side]["runs"]:
            run.pop("mask")  # temporary paths, gone now
    path = harness.write_results("peer", results, render, args.out)
    text = (args.out / "peer.md").read_text()
    print(text + f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
