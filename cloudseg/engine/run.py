"""Run the engine over scenes: one backend for all of them, scenes overlapped, a run report.

The first scene is opened and checked before anything else, and decides the tile size (unless
``--tile``); the backend is built once. Then, in one process (:func:`run_local`), each scene goes
through :mod:`cloudseg.engine.scene_task`'s three steps with its neighbours overlapped: while
scene *i* infers, scene *i + 1* is opened in the background and, once *i*'s tiles are all read,
its first tiles are read ahead; scene *i*'s files are finished (COGs, polygons, summary) on a
finisher thread while *i + 1* infers. Memory stays bounded: one scene's look-ahead and blender
at a time, plus one scene finishing. With ``--ray`` the scenes go to a pool of Ray actors
instead (:mod:`cloudseg.engine.ray_runner`).

Every scene's fate goes into the run report (:mod:`cloudseg.engine.report`) as it ends; with
``--keep-going`` a failed scene is reported and the rest go on.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cloudseg.atomic import remove_stale_in
from cloudseg.card import ModelCard, read_json
from cloudseg.card import read as read_card
from cloudseg.data.sources import expand, open_any
from cloudseg.engine import models
from cloudseg.engine.backend import Backend
from cloudseg.engine.config import RunConfig, default_batch
from cloudseg.engine.registry import Choice, choose, is_torch_model, open_backend
from cloudseg.engine.report import RunOutcome, RunReport, SceneEntry, run_key
from cloudseg.engine.scene_task import (
    Prepared,
    RunPlan,
    finish,
    gdal_env,
    infer,
    out_dir_for,
    prepare,
)
from cloudseg.engine.stac_out import ITEM_SUFFIX, write_collection
from cloudseg.engine.tile_plan import check_tile_budget, plan_tiles
from cloudseg.engine.tiling import TileSpec
from cloudseg.errors import CloudsegError
from cloudseg.scene import Scene, check_value_kind

log = logging.getLogger("cloudseg.run")


__all__ = [
    "EngineSetup",
    "RunConfig",
    "RunOutcome",
    "default_batch",
    "model_card",
    "plan_engine",
    "run",
]


def model_card(model: Path) -> ModelCard:
    """The card of an ONNX file (inside it or beside it) or of a run folder / checkpoint."""
    model = Path(model)
    if is_torch_model(model):
        return read_json((model if model.is_dir() else model.parent) / "card.json")
    return read_card(model)


@dataclass(frozen=True)
class EngineSetup:
    """What a run decides from its first scene, before any backend exists: the model (resolved
    to a file), its card, the providers to try, the tile grid and the threshold."""

    config: RunConfig  # with the model resolved to its file
    card: ModelCard
    choice: Choice
    spec: TileSpec
    threshold: float
    extra: dict[str, Any]  # for the summary: the tile plan, when the tile was planned


def plan_engine(first: Scene, config: RunConfig) -> EngineSetup:
    """The model, providers, tile and threshold for scenes like ``first``: one decision that
    ``cloudseg-run`` and :func:`cloudseg.predict` share, so both run a scene alike.

    Raises:
        CloudsegError: no model fits, a named provider is unknown, or the tile does not fit the
            model or the memory budget.
    """
    if config.model is None:
        model, why = models.default_for(first)
        log.info("model: %s (no --model given)", why)
        config = replace(config, model=model)
    else:
        config = replace(config, model=models.resolve(config.model))
    card = model_card(Path(config.model))
    if (warning := models.warn_if_synthetic(card, Path(config.model), first)) is not None:
        log.warning("%s", warning)
    choice = choose(config.provider, config.model, config.device)
    tile, extra = config.tile, {}
    provider = choice.candidates[0] if choice.candidates else "cpu"
    batch = config.batch or default_batch(provider, config.device)
    if tile is None:  # the first scene's best size: one backend (one shape) for all
        tile_plan = plan_tiles(card, first, provider, batch, config.memory_budget)
        tile = tile_plan.tile
        extra["tile_plan"] = tile_plan.as_dict() | {"planned_on": first.scene_id}
    card.check_tile(tile)
    check_tile_budget(card, tile, provider, batch, config.memory_budget)
    overlap = card.default_overlap(tile) if config.overlap is None else config.overlap
    threshold = card.threshold if config.threshold is None else config.threshold
    return EngineSetup(config, card, choice, TileSpec(tile, overlap), threshold, extra)


def run(scenes: list[str | Path], config: RunConfig) -> RunOutcome:
    """Mask every scene (``@manifest`` arguments expanded); see the module docstring."""
    with gdal_env():
        outcome = _run(expand([str(s) for s in scenes]), config)
    if outcome.report is not None:  # the STAC Collection of every item the run wrote or kept
        items = [Path(o) for e in outcome.report.entries if e.status in ("done", "skipped")
                 for o in e.outputs if o.endswith(ITEM_SUFFIX)]  # fmt: skip
        write_collection(outcome.report.folder, items)
    return outcome


def _run(specs: list[str], config: RunConfig) -> RunOutcome:
    if not specs:
        raise CloudsegError("no scenes to mask (an empty manifest?)")
    # The first scene that opens is checked before the backend exists (a bad call costs
    # nothing) and decides the model, tile and report folder; with --keep-going the scenes
    # before it that did not open are reported, not fatal.
    start, first, early = _first_that_opens(specs, config.keep_going)
    if first is None:
        return _all_failed(specs, early, config)
    setup = plan_engine(first, config)
    config, card, choice, spec = setup.config, setup.card, setup.choice, setup.spec
    threshold, tile, extra = setup.threshold, spec.tile, dict(setup.extra)
    options = config.as_dict() | {"tile": tile, "overlap": spec.overlap, "threshold": threshold}
    if not config.keep_going:  # refused before any folder or ledger is made
        check_value_kind(card, first)
    key = run_key(card, Path(config.model), options)
    folder = config.out or out_dir_for(first, config)
    report = RunReport(folder, options, specs, key)
    try:
        for failed_spec, exc in early:  # said as they failed; only recorded now
            report.record(_entry(failed_spec, exc))
        if removed := remove_stale_in(folder):
            log.info("removed %d temporaries a killed run left in %s", len(removed), folder)
        plan = RunPlan(config, card, spec, threshold, key, extra)
        rest = specs[start:]
        if config.ray is not None:
            from cloudseg.engine.ray_runner import run_ray  # the [ray] extra, when asked

            return run_ray(rest, plan, choice, report)
        ready: Prepared | BaseException | None = None
        if not (config.skip_existing and report.finished(rest[0])):
            # The first scene is checked (value kind, outputs) before the backend is built.
            try:
                ready = prepare(rest[0], plan, first)
            except (CloudsegError, OSError) as exc:
                if not config.keep_going:
                    raise
                ready = exc
        backend = open_backend(config.model, choice, lambda p: config.options(p, tile))
        plan.extra["provider_choice"] = choice.as_dict()
        try:
            outcome = run_local(rest, plan, backend, report, ready)
        finally:
            _close(backend.close)
        return outcome
    finally:
        _close(report.close)


def _close(close: Any) -> None:
    """Close a resource even if Ctrl-C lands meanwhile. Every scene has ended by then (or the
    run is already stopping): an interrupt during the close is finished, not obeyed, so a run
    whose outputs are all written never says "interrupted", and an interrupted run's report
    is still exported."""
    try:
        close()
    except KeyboardInterrupt:
        log.warning("interrupted while closing the run; closing it all the same")
        close()


def _first_that_opens(
    specs: list[str], keep_going: bool
) -> tuple[int, Scene | None, list[tuple[str, BaseException]]]:
    """Index and scene of the first spec that opens, and the failures before it (only with
    ``keep_going``: otherwise the first failure is raised)."""
    early: list[tuple[str, BaseException]] = []
    for i, spec in enumerate(specs):
        try:
            return i, open_any(spec), early
        except (CloudsegError, OSError) as exc:
            if not keep_going:
                raise
            log.warning("failed, going on: %s", exc)
            early.append((spec, exc))
    return len(specs), None, early


def _all_failed(
    specs: list[str], early: list[tuple[str, BaseException]], config: RunConfig
) -> RunOutcome:
    """No scene opened (under --keep-going): reported in --out, or the first error raised."""
    if config.out is None:
        raise early[0][1]
    report = RunReport(config.out, config.as_dict(), specs)
    try:
        for spec, exc in early:
            report.record(_entry(spec, exc))
    finally:
        report.close()
    return RunOutcome(report=report)


def _entry(spec: str, exc: BaseException) -> SceneEntry:
    return SceneEntry(spec, "failed", error=str(exc))


def run_local(
    specs: list[str],
    plan: RunPlan,
    backend: Backend,
    report: RunReport,
    ready: Prepared | BaseException | None = None,
) -> RunOutcome:
    """Every scene in this process, overlapped unless ``--sequential`` (module docstring).

    Args:
        ready: the first scene already prepared (or its failure, under ``--keep-going``).
    """
    config = plan.config
    outcome = RunOutcome(report=report)
    overlapped = not config.sequential
    opener = ThreadPoolExecutor(1, thread_name_prefix="cloudseg-open") if overlapped else None
    finisher = ThreadPoolExecutor(1, thread_name_prefix="cloudseg-finish") if overlapped else None
    scenes_bar = tqdm(total=len(specs), unit="scene", desc="scenes", position=0,
                      disable=not config.progress or len(specs) == 1)  # fmt: skip
    finishing: Future | None = None

    asked: dict[str, SceneEntry | None] = {}

    def done_before(spec: str) -> SceneEntry | None:
        """With --skip-existing, the ledger's word that ``spec`` is done: not opened at all
        (asked once a scene: the opener asks ahead of the loop)."""
        if not config.skip_existing:
            return None
        if spec not in asked:
            asked[spec] = report.finished(spec)
        return asked[spec]

    def open_next(i: int) -> Future | None:
        """Scene ``i`` opened (and checked) in the background, while the current one infers."""
        if i >= len(specs) or opener is None or done_before(specs[i]) is not None:
            return None
        return opener.submit(prepare, specs[i], plan)

    def settle(future: Future | None) -> None:
        """Wait for a scene being finished (its failure raised unless --keep-going)."""
        if future is not None:
            future.result()

    def finish_and_record(inferred: Any, spec: str) -> None:
        try:
            summary = finish(inferred, backend, plan)
        except (CloudsegError, OSError) as exc:
            report.record(_entry(spec, exc))
            raise
        outcome.summaries.append(summary)
        report.record(SceneEntry(
            spec, "done", summary["scene_id"], summary["seconds_total"], summary["cloud_cover"],
            outputs=summary["outputs"],
        ))  # fmt: skip
        scenes_bar.update()

    upcoming: Future | None = None
    try:
        for i, spec in enumerate(specs):
            if (done := done_before(spec)) is not None:
                report.record(done)
                scenes_bar.update()
                upcoming = open_next(i + 1)
                continue
            try:
                if i == 0 and ready is not None:
                    if isinstance(ready, BaseException):
                        raise ready
                    prepared: Prepared = ready
                elif upcoming is not None:
                    prepared = upcoming.result()
                else:
                    prepared = prepare(spec, plan)
            except (CloudsegError, OSError) as exc:
                upcoming = open_next(i + 1)
                _fail(report, spec, exc, config, scenes_bar)
                continue
            upcoming = open_next(i + 1)
            if prepared.job is None:  # --skip-existing: made already, with these options
                report.record(SceneEntry(spec, "skipped", prepared.scene.scene_id, 0.0,
                                         outputs=[str(p) for p in prepared.paths.files(
                                             config.probabilities, config.vector)]))  # fmt: skip
                scenes_bar.update()
                continue
            next_up = upcoming

            def read_ahead(next_up: Future | None = next_up) -> None:
                # The next scene's first tiles, while this one's last batches run.
                if next_up is not None and next_up.done() and next_up.exception() is None:
                    job = next_up.result().job
                    if job is not None:
                        job.reader.prefetch()

            try:
                inferred = infer(prepared, backend, plan, position=1 if len(specs) > 1 else 0,
                                 on_reads_done=read_ahead if overlapped else None)  # fmt: skip
            except (CloudsegError, OSError) as exc:
                _fail(report, spec, exc, config, scenes_bar)
                continue
            settle(finishing)
            finishing = None
            if finisher is None:
                _guard(lambda inferred=inferred, spec=spec: finish_and_record(inferred, spec),
                       config)  # fmt: skip
            else:
                finishing = finisher.submit(
                    _guard, lambda inferred=inferred, spec=spec: finish_and_record(inferred, spec),
                    config,
                )  # fmt: skip
        settle(finishing)
    finally:
        for pool in (opener, finisher):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        scenes_bar.close()
    return outcome


def _guard(action: Any, config: RunConfig) -> None:
    """Run a scene's finishing step; its failure is reported, and raised unless --keep-going."""
    try:
        action()
    except (CloudsegError, OSError) as exc:
        if not config.keep_going:
            raise
        log.warning("failed, going on: %s", exc)


def _fail(report: RunReport, spec: str, exc: BaseException, config: RunConfig, bar: Any) -> None:
    """Record a failed scene; stop the run unless --keep-going (then say so and go on)."""
    report.record(_entry(spec, exc))
    bar.update()
    if not config.keep_going:
        raise exc
    log.warning("failed, going on: %s", exc)
