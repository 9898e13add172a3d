"""Export finished runs to the trackers researchers already use: TensorBoard event files and an
MLflow tracking store. Both read only the run folder (history, config, metrics, labels); nothing
is sent anywhere while training. Exporting again replaces what an earlier export wrote, so a
run appears once. tensorboard and mlflow-skinny are optional extras, imported here only."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsmrun.base.errors import UserError
from fsmrun.base.overrides import flatten
from fsmrun.runs.layout import resolve_run
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.records import HistoryRecord, Metrics, RunLabels, RunRecord
from fsmrun.sweeps.coordinator import cell_state, find_sweep, read_record
from fsmrun.train.history import read_history

RUN_ID_TAG = "fsmrun.run_id"  # the MLflow tag that finds a run exported before
DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"  # a local file, as `mlflow ui` expects it
_MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


class ExportError(UserError):
    """A missing extra, an empty selection or a tracker that refused the export."""


@dataclass(frozen=True)
class ExportRun:
    """What an exporter reads of one run folder."""

    folder: RunFolder
    record: RunRecord
    params: dict[str, str]  # the flattened config, every value as text
    history: list[HistoryRecord]
    metrics: Metrics | None
    labels: RunLabels

    @property
    def final(self) -> dict[str, float]:
        """The best checkpoint's accuracies on each split, e.g. {'test.string_acc': 0.98}."""
        if self.metrics is None:
            return {}
        found = {}
        for split in ("val", "test", "test_ood"):
            values = getattr(self.metrics.best, split)
            for field in ("string_acc", "string_balanced_acc", "class_acc", "char_acc"):
                value = getattr(values, field, None) if values is not None else None
                if value is not None:
                    found[f"{split}.{field}"] = value
        return found


def scalar_series(history: list[HistoryRecord]) -> dict[str, list[tuple[int, float, float]]]:
    """Every scalar of the history as name -> [(step, unix time, value)]: training losses
    (train.loss.<name>), learning rate, gradient norm, and validation metrics (val.<name>)."""
    series: dict[str, list[tuple[int, float, float]]] = {}

    def add(name: str, h: HistoryRecord, value: float | None) -> None:
        if value is not None:
            series.setdefault(name, []).append((h.step, h.time, float(value)))

    for h in history:
        if h.kind == "train":
            for name, value in (h.losses or {}).items():
                add(f"train.loss.{name}", h, value)
            add("train.lr", h, h.lr)
            add("train.grad_norm", h, h.grad_norm)
        elif h.kind == "eval":
            for name, value in (h.metrics or {}).items():
                add(name, h, value)
    return series


def load_export_run(path: Path) -> ExportRun:
    folder = RunFolder(path)
    config = folder.read_config()
    params = {}
    if config is not None:
        for key, value in flatten(config.model_dump(mode="json")).items():
            params[key] = value if isinstance(value, str) else json.dumps(value)
    return ExportRun(
        folder, folder.read_record(), params, read_history(folder.history),
        folder.read_metrics(), folder.read_labels(),
    )  # fmt: skip


def select_runs(root: Path, refs: Iterable[str], sweep: str | None) -> list[ExportRun]:
    """The runs named (ids, prefixes, folders) plus every run of `sweep`, once each."""
    folders = [resolve_run(root, ref) for ref in refs]
    if sweep is not None:
        record = read_record(find_sweep(root, sweep))
        for cell in record.cells:
            state = cell_state(root, cell.experiment, cell.config_hash, None)
            if state.folder is not None:
                folders.append(state.folder)
    if not folders:
        raise ExportError("nothing to export: name runs (RUN...) or a sweep (--sweep NAME)")
    return [load_export_run(Path(f)) for f in dict.fromkeys(Path(f) for f in folders)]


# ---------------------------------------------------------------------------- TensorBoard


def export_tensorboard(runs: list[ExportRun], out: Path) -> list[Path]:
    """One folder of event files per run, `<out>/<run id>/`: every scalar against the step
    (names with '/' for TensorBoard's grouping), the config and tags as hparams with the final
    accuracies, the note as text. An earlier export of the run is replaced. The folders."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch finds no tensorboard package
        raise ExportError(
            "exporting to TensorBoard needs the tensorboard package: "
            "pip install 'fsmrun[tensorboard]'"
        ) from exc
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for run in runs:
        target = out / run.record.run_id
        staging = Path(tempfile.mkdtemp(prefix=f".{run.record.run_id}.", dir=out))
        try:
            writer = SummaryWriter(log_dir=str(staging))
            for name, points in scalar_series(run.history).items():
                for step, when, value in points:
                    writer.add_scalar(name.replace(".", "/"), value, step, walltime=when)
            if run.labels.note:
                writer.add_text("note", run.labels.note)
            hparams: dict[str, Any] = {
                **run.params,
                **{f"tag.{k}": v for k, v in run.labels.tags.items()},
                "run_id": run.record.run_id,
                "status": run.record.status,
            }
            final = {f"final/{k}": v for k, v in run.final.items()}
            writer.add_hparams(hparams, final, run_name=".")
            writer.close()
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        written.append(target)
    return written


# ---------------------------------------------------------------------------- MLflow


def export_mlflow(runs: list[ExportRun], tracking_uri: str = DEFAULT_MLFLOW_URI) -> list[str]:
    """Log each run to the MLflow store at `tracking_uri` (an MLflow experiment per fsmrun
    experiment): params = the flattened config, metrics with their steps, tags = experiment,
    arch, seed, run id, status and the run's own tags; metrics.json and plots/ as artifacts.
    A run exported before (found by its fsmrun.run_id tag) is updated: new metric points
    only, tags set again. The MLflow run ids."""
    try:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param, RunTag
    except ImportError as exc:
        raise ExportError(
            "exporting to MLflow needs mlflow-skinny (with sqlalchemy and alembic for a "
            "sqlite store): pip install 'fsmrun[mlflow]'"
        ) from exc
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no "creating tables" chatter
    client = MlflowClient(tracking_uri=tracking_uri)
    ids = []
    for run in runs:
        experiment = client.get_experiment_by_name(run.record.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(
                run.record.experiment, artifact_location=_artifact_root(tracking_uri)
            )
        )
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run.record.run_id}'"
        )
        mlflow_run = found[0] if found else client.create_run(
            experiment_id, start_time=int(run.record.created * 1000),
            run_name=run.record.run_id,
        )  # fmt: skip
        run_id = mlflow_run.info.run_id
        logged = {
            key: {(m.step, m.timestamp) for m in client.get_metric_history(run_id, key)}
            for key in (mlflow_run.data.metrics if found else {})
        }
        metrics = [
            Metric(name, value, int(when * 1000), step)
            for name, points in scalar_series(run.history).items()
            for step, when, value in points
            if (step, int(when * 1000)) not in logged.get(name, set())
        ]
        stamp = int(run.record.updated * 1000)
        metrics += [
            Metric(f"final.{k}", v, stamp, run.record.steps)
            for k, v in run.final.items()
            if (run.record.steps, stamp) not in logged.get(f"final.{k}", set())
        ]
        params = [] if found else [Param(k, v[:6000]) for k, v in run.params.items()]
        tags = _mlflow_tags(run)
        stale = [k for k in mlflow_run.data.tags if k.startswith("tag.") and k not in tags]
        for key in stale:  # a label removed since the last export
            client.delete_tag(run_id, key)
        for start in range(0, max(len(metrics), len(params), 1), 900):  # MLflow's batch limit
            client.log_batch(
                run_id,
                metrics=metrics[start : start + 900],
                params=params[start : start + 90] if start == 0 else [],
                tags=[RunTag(k, v) for k, v in tags.items()] if start == 0 else [],
            )
        for start in range(90, len(params), 90):
            client.log_batch(run_id, params=params[start : start + 90])
        if run.folder.metrics_json.is_file():
            client.log_artifact(run_id, str(run.folder.metrics_json))
        plots = run.folder.plots_dir
        if plots.is_dir() and any(plots.iterdir()):
            client.log_artifacts(run_id, str(plots), artifact_path="plots")
        status = _MLFLOW_STATUS.get(run.record.status)
        if status is not None:
            client.set_terminated(run_id, status, end_time=stamp)
        ids.append(run_id)
    return ids


def _artifact_root(tracking_uri: str) -> str | None:
    """Artifacts of a local sqlite store go beside its file (`mlflow-artifacts/`), not into
    ./mlruns of wherever the command ran; other stores keep their own default."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
    return (database.parent / "mlflow-artifacts").as_uri()


def _mlflow_tags(run: ExportRun) -> dict[str, str]:
    tags = {
        RUN_ID_TAG: run.record.run_id,
        "experiment": run.record.experiment,
        "arch": run.params.get("model.arch", "-"),
        "seed": run.params.get("seed", "-"),
        "status": run.record.status,
        "config_hash": run.record.config_hash,
        "mlflow.runName": run.record.run_id,
        **{f"tag.{k}": v for k, v in run.labels.tags.items()},
    }
    if run.labels.note:
        tags["mlflow.note.content"] = run.labels.note
    return tags
