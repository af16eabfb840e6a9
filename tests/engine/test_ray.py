"""Scale-out on Ray: a local 2-CPU cluster, 6 synthetic scenes, and a worker killed mid-scene.

Every scene must end with complete outputs or a reported failure, with no temporary left; the
scene whose worker died is tried again on a new one. The masks equal one process's.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from onnx_models import B1, W1, card_for, conv_model

from cloudseg.card import InputTransform
from cloudseg.data.synthetic import make_scene, random_spec
from cloudseg.data.synthetic_write import write_scene_folder
from cloudseg.engine.config import RunConfig
from cloudseg.engine.run import run
from cloudseg.export.sources import GENERIC_MEAN, GENERIC_STD

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is not installed (the [ray] extra)"
)
SCENES = 6


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster with 2 CPUs, started (and stopped) by the test itself."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token file in the user's home
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="cloudseg")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[list[str], Path]:
    root = tmp_path_factory.mktemp("archive")
    specs = []
    for i in range(SCENES):
        folder = root / f"scene{i}"
        write_scene_folder(make_scene(random_spec(60 + i, 480, cloud_fraction=0.3)), folder)
        specs.append(str(folder))
    card = dataclasses.replace(
        card_for(tile=64), transform=InputTransform(1 / 65535, 0.0, GENERIC_MEAN, GENERIC_STD)
    )
    return specs, conv_model(root / "conv.onnx", W1[None], B1, card)


def _kill_one_worker_mid_scene(ray, out: Path, done: threading.Event, killed: list) -> None:
    """Once a scene is being written (a temporary exists), SIGKILL the worker writing it."""
    deadline = time.monotonic() + 60
    while not done.is_set() and time.monotonic() < deadline:
        if any(out.glob(".*.part")):
            names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if a["name"].startswith("cloudseg-worker-")]  # fmt: skip
            for name in names:
                pid = ray.get(ray.get_actor(name, namespace="cloudseg").pid.remote())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.02)


def test_a_killed_worker_costs_only_its_scene(cluster, archive, tmp_path) -> None:
    specs, model = archive
    out = tmp_path / "out"
    config = RunConfig(model=model, provider="cpu", out=out, tile=64, ray="auto", retries=1,
                       keep_going=True, progress=False)  # fmt: skip
    done, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_one_worker_mid_scene,
                              args=(cluster, out, done, killed))  # fmt: skip
    killer.start()
    try:
        outcome = run(specs, config)
    finally:
        done.set()
        killer.join()
    assert len(killed) == 1, "no worker was caught mid-scene"
    entries = outcome.report.entries
    assert [e.scene for e in entries] == specs
    assert all(e.status in ("done", "failed") for e in entries)
    retried = [e for e in entries if e.attempts == 2]
    assert len(retried) == 1 and retried[0].status == "done"  # tried again on a new worker
    assert not list(out.glob(".*.part"))  # the dead worker's temporaries are gone
    for entry in entries:
        if entry.status == "done":
            assert all(Path(p).is_file() for p in entry.outputs)
            (summary_file,) = [p for p in entry.outputs if p.endswith("_summary.json")]
            summary = json.loads(Path(summary_file).read_text())
            assert summary["provider"] == ["CPUExecutionProvider"]
            assert summary["backend"]["threads"] == 1  # one core per actor on the 2-CPU cluster
    report = json.loads((out / "cloudseg-run.json").read_text())
    assert report["counts"]["done"] + report["counts"]["failed"] == SCENES

    # The same scenes in one process give the same masks.
    local = tmp_path / "local"
    run(specs[:2], dataclasses.replace(config, ray=None, out=local))
    for path in local.glob("*_cloudmask.tif"):
        with rasterio.open(path) as a, rasterio.open(out / path.name) as b:
            np.testing.assert_array_equal(a.read(1), b.read(1))
