"""Scale-out on Ray: a pool of actors, each holding one backend session, scenes handed out as
actors free up (``cloudseg-run --ray auto|ADDRESS``, the ``[ray]`` extra).

* One actor per GPU (``num_gpus=1``) when the provider runs on a GPU (cuda, tensorrt, torch with
  ``--device``) and the cluster has GPUs; otherwise one actor per ``--threads`` CPU cores
  (``num_cpus=threads``, default 1), so a 2-CPU cluster runs two scenes at a time.
* Each actor builds its backend once (model loaded once per worker) and masks a scene with the
  same three steps as one process (:mod:`cloudseg.engine.scene_task`), writing its outputs with
  the same atomic rule, to local paths or any folder the workers can reach.
* A worker that dies (killed, out of memory, a lost node) costs only its scene: the driver sees
  ``RayActorError``, starts a replacement actor, and tries the scene again on the next free one,
  up to ``--retries`` more times; the next try removes the temporaries the dead one left. A
  scene whose tries are used up is reported failed, and its temporaries are removed.
* The driver keeps the progress bar and writes the run report as each scene ends.

``--ray auto`` joins the cluster ``ray start`` made on this machine (or ``RAY_ADDRESS``), else
starts a local one with every core; ``--ray ADDRESS`` joins that cluster. On a cluster of several
machines the model, the scenes (or URLs) and ``--out`` must be reachable at the same paths from
every worker.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import replace
from typing import Any

from tqdm import tqdm

from cloudseg.atomic import remove_stale
from cloudseg.engine.registry import Choice
from cloudseg.engine.report import RunOutcome, RunReport, SceneEntry
from cloudseg.engine.scene_task import RunPlan, out_dir_for
from cloudseg.errors import CloudsegError, ProviderError

log = logging.getLogger("cloudseg.run")

#: Ray namespace and actor name prefix (named, so that operators and tests can find them).
NAMESPACE = "cloudseg"
ACTOR_PREFIX = "cloudseg-worker-"
GPU_PROVIDERS = ("cuda", "tensorrt")


class SceneWorker:
    """One Ray actor: one backend session, scenes masked one after another.

    Everything heavy is imported here, in the worker process, so the driver's modules never
    travel to it.
    """

    def __init__(self, plan: RunPlan, choice: Choice) -> None:
        from cloudseg.engine.heap import bound_heap

        bound_heap()
        from cloudseg.engine.registry import open_backend

        self.plan = plan
        tile = plan.spec.tile
        self.backend = open_backend(
            plan.config.model, choice, lambda p: plan.config.options(p, tile)
        )
        self.plan.extra["provider_choice"] = choice.as_dict()

    def pid(self) -> int:
        return os.getpid()

    def mask(self, spec: str) -> dict[str, Any]:
        """Mask one scene; what happened, as a report entry's fields."""
        from cloudseg.engine.scene_task import finish, gdal_env, infer, prepare
        from cloudseg.errors import CloudsegError

        try:
            with gdal_env():
                prepared = prepare(spec, self.plan)
                if prepared.job is None:
                    return {"status": "skipped", "scene_id": prepared.scene.scene_id}
                summary = finish(infer(prepared, self.backend, self.plan), self.backend, self.plan)
        except (CloudsegError, OSError) as exc:
            return {"status": "failed", "error": str(exc)}
        return {
            "status": "done", "scene_id": summary["scene_id"], "seconds": summary["seconds_total"],
            "cloud_cover": summary["cloud_cover"], "outputs": summary["outputs"],
            "pid": os.getpid(),
        }  # fmt: skip


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ProviderError("--ray needs Ray: pip install 'cloudseg[ray]'") from None
    return ray


#: Seconds to wait for a named Ray address to accept a connection (Ray itself retries for
#: minutes, printing its own log lines, before it gives up on an address nobody listens at).
REACH_TIMEOUT_S = 10.0


def check_reachable(address: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Refuse, in one line, a ``--ray HOST:PORT`` (or ``ray://HOST:PORT``) nobody listens at.

    Raises:
        ProviderError: not ``HOST:PORT``, or no connection within ``timeout`` seconds.
    """
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ProviderError(f"--ray {address}: expected auto or HOST:PORT of a Ray cluster")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ProviderError(
            f"--ray {address}: no Ray cluster answers there ({reason}); start one with "
            "`ray start --head`, or use --ray auto"
        ) from None


def connect(address: str) -> Any:
    """Join (or start) the Ray cluster ``--ray`` names; returns the ``ray`` module."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False}
    if address != "auto":
        check_reachable(address)
        ray.init(address=address, **kwargs)
        return ray
    try:  # a cluster `ray start` made here, or RAY_ADDRESS
        ray.init(address="auto", **kwargs)
    except ConnectionError:
        ray.init(include_dashboard=False, **kwargs)
    return ray


def _actor_resources(ray: Any, plan: RunPlan, provider: str) -> tuple[dict[str, float], int]:
    """Per-actor resources and how many actors the cluster holds at once."""
    total = ray.cluster_resources()
    config = plan.config
    on_gpu = provider in GPU_PROVIDERS or (provider == "torch" and config.device is not None)
    if on_gpu and total.get("GPU", 0) >= 1:
        return {"num_gpus": 1, "num_cpus": 1}, int(total["GPU"])
    threads = config.threads or 1
    return {"num_cpus": threads}, max(1, int(total.get("CPU", 1) // threads))


def run_ray(specs: list[str], plan: RunPlan, choice: Choice, report: RunReport) -> Any:
    """Every scene on a pool of Ray actors; see the module docstring."""
    config = plan.config
    ray = connect(config.ray or "auto")
    provider = choice.candidates[0] if choice.candidates else "cpu"
    resources, size = _actor_resources(ray, plan, provider)
    if "num_gpus" not in resources:  # each CPU actor's backend gets its share of the cores
        plan = replace(plan, config=replace(config, threads=resources["num_cpus"]))
    remote_worker = ray.remote(**resources)(SceneWorker)
    run_id = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))

    def new_actor() -> Any:
        name = f"{ACTOR_PREFIX}{run_id}-{next(counter)}"
        return remote_worker.options(name=name, namespace=NAMESPACE).remote(plan, choice)

    todo = []
    for spec in specs:  # the ledger answers --skip-existing before any worker opens a scene
        done = report.finished(spec) if config.skip_existing else None
        if done is not None:
            report.record(done)
        else:
            todo.append(spec)
    idle = [new_actor() for _ in range(min(size, len(todo)))]
    attempts: dict[str, int] = {}
    running: dict[Any, tuple[Any, str]] = {}
    bar = tqdm(total=len(todo), unit="scene", desc="scenes", disable=not config.progress)
    outcome = RunOutcome(report=report)
    try:
        while todo or running:
            while todo and idle:
                actor, spec = idle.pop(0), todo.pop(0)
                attempts[spec] = attempts.get(spec, 0) + 1
                running[actor.mask.remote(spec)] = (actor, spec)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor, spec = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as exc:  # the worker died mid-scene
                idle.append(new_actor())
                if attempts[spec] <= config.retries:
                    log.warning("worker died on %s; trying it again (%d of %d)", spec,
                                attempts[spec] + 1, config.retries + 1)  # fmt: skip
                    todo.insert(0, spec)
                    continue
                reason = " ".join(str(exc).split())[:200]
                result = {"status": "failed", "error": f"{spec}: the worker masking it died "
                          f"{attempts[spec]} time(s) ({reason})"}  # fmt: skip
                _remove_leftovers(spec, plan)
            else:
                idle.append(actor)
            report.record(SceneEntry(
                spec, result["status"], result.get("scene_id"), result.get("seconds"),
                result.get("cloud_cover"), result.get("error"), result.get("outputs", []),
                attempts[spec],
            ))  # fmt: skip
            bar.update()
            if result["status"] == "failed" and not config.keep_going:
                raise CloudsegError(result["error"])
    finally:
        bar.close()
        for actor in idle + [a for a, _ in running.values()]:
            ray.kill(actor)
    return outcome


def _remove_leftovers(spec: str, plan: RunPlan) -> None:
    """Temporaries a dead worker left for ``spec``'s outputs (it will not be tried again)."""
    from cloudseg.data.sources import open_any
    from cloudseg.engine.outputs import OutputPaths

    try:
        scene = open_any(spec)
    except CloudsegError:
        return
    paths = OutputPaths.for_scene(out_dir_for(scene, plan.config), scene.scene_id)
    for path in paths.files(True, True):
        remove_stale(path)
