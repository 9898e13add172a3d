"""`fsmrun export`: TensorBoard event files read back with TensorBoard's own EventAccumulator,
an MLflow sqlite store queried with MlflowClient; exporting again updates, never duplicates.
Skipped when the optional extras are not installed."""

from __future__ import annotations

import json

import pytest

from fsmrun.train.history import read_history


def _history(folder):
    return read_history(folder / "logs" / "history.jsonl")


def test_tensorboard_event_files_hold_the_curves_and_the_hparams(cli, trained_copy, tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    root, folder, run_id = trained_copy.root, trained_copy.folders[0], trained_copy.run_ids[0]
    assert (
        cli("tag", run_id, "paper=v2", "--note", "figure 3", "--results-dir", root).exit_code == 0
    )
    out = tmp_path / "tb"
    for _ in range(2):  # the second export replaces the first
        result = cli("export", "tensorboard", run_id, "--out", out, "--results-dir", root)
        assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == [run_id]
    events = event_accumulator.EventAccumulator(
        str(out / run_id), size_guidance={event_accumulator.SCALARS: 0}
    )
    events.Reload()
    history = _history(folder)
    train = [h for h in history if h.kind == "train"]
    evals = [h for h in history if h.kind == "eval"]
    lr = events.Scalars("train/lr")
    assert [(e.step, round(e.value, 9)) for e in lr] == [(h.step, round(h.lr, 9)) for h in train]
    grad = events.Scalars("train/grad_norm")
    assert [e.step for e in grad] == [h.step for h in train]
    total = events.Scalars("train/loss/total")
    assert [round(e.value, 5) for e in total] == [round(h.losses["total"], 5) for h in train]
    val = events.Scalars("val/string_acc")
    assert [(e.step, round(e.value, 6)) for e in val] == [
        (h.step, round(h.metrics["val.string_acc"], 6)) for h in evals
    ]
    metrics = json.loads((folder / "metrics.json").read_text())
    final = events.Scalars("final/test.string_acc")
    assert [round(e.value, 6) for e in final] == [round(metrics["best"]["test"]["string_acc"], 6)]
    hparams = events.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams)
    start = hparams["_hparams_/session_start_info"]
    for text in (b"model.d_model", b"tag.paper", b"v2", run_id.encode()):
        assert text in start
    assert "note/text_summary" in events.Tags()["tensors"]


def test_mlflow_logs_each_run_once_with_params_metrics_tags_and_artifacts(
    cli, trained_copy, tmp_path
):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow import MlflowClient

    root, (first, second) = trained_copy.root, trained_copy.run_ids
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert cli("tag", first, "paper=v2", "--results-dir", root).exit_code == 0
    for _ in range(2):  # exporting again must not add runs or metric points
        result = cli("export", "mlflow", first, second, "--tracking-uri", uri,
                     "--results-dir", root)  # fmt: skip
        assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = {r.data.tags["fsmrun.run_id"]: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == sorted([first, second])
    run = runs[first]
    config = json.loads((trained_copy.folders[0] / "config.json").read_text())
    assert run.data.params["model.d_model"] == str(config["model"]["d_model"])
    assert run.data.params["data.regex"] == config["data"]["regex"]
    assert run.data.params["seed"] == "0"
    assert {k: run.data.tags[k] for k in ("experiment", "arch", "seed", "tag.paper")} == {
        "experiment": "tiny", "arch": "transformer", "seed": "0", "tag.paper": "v2",
    }  # fmt: skip
    assert run.info.status == "FINISHED"
    evals = [h for h in _history(trained_copy.folders[0]) if h.kind == "eval"]
    points = client.get_metric_history(run.info.run_id, "val.string_acc")
    assert sorted((m.step, round(m.value, 6)) for m in points) == [
        (h.step, round(h.metrics["val.string_acc"], 6)) for h in evals
    ]
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["metrics.json"]
    # a label changed since: exported again, the MLflow run follows (a removed tag goes)
    assert cli("tag", first, "paper=v3", "size=s", "--results-dir", root).exit_code == 0
    assert (
        cli("export", "mlflow", first, "--tracking-uri", uri, "--results-dir", root).exit_code == 0
    )
    assert cli("tag", first, "--remove", "size", "--results-dir", root).exit_code == 0
    assert (
        cli("export", "mlflow", first, "--tracking-uri", uri, "--results-dir", root).exit_code == 0
    )
    (again,) = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`fsmrun.run_id` = '{first}'"
    )
    assert again.info.run_id == run.info.run_id
    assert again.data.tags["tag.paper"] == "v3" and "tag.size" not in again.data.tags
    assert len(client.get_metric_history(run.info.run_id, "val.string_acc")) == len(evals)


def test_export_needs_runs_or_a_sweep(cli, trained):
    result = cli("export", "tensorboard", "--results-dir", trained.root)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: nothing to export: name runs (RUN...)")
