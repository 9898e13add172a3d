"""`fsmrun eval`: metrics tables with baselines and length bins, and schema-valid --json."""

from __future__ import annotations

from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.cli import EvalReport


def test_eval_table_shows_splits_baselines_and_length_bins(cli, trained):
    result = cli("eval", trained.run_ids[0], "--results-dir", trained.root, "--device", "cpu")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "checkpoint best" in out and "(base)" in out
    for split in ("val", "test", "test_ood"):
        assert f"{split} by string length" in out
    assert "9-12" in out  # the OOD length range forms a bin


def test_eval_json_is_schema_valid_and_matches_metrics_json(cli, trained):
    folder = trained.folders[0]
    result = cli("eval", str(folder), "--checkpoint", "last", "--split", "test", "--json",
                 "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = EvalReport.model_validate_json(result.stdout)
    assert report.checkpoint == "last" and report.step == 8 and list(report.splits) == ["test"]
    assert report.splits["test"] == RunFolder(folder).read_metrics().last.test


def test_a_damaged_checkpoint_is_evaluated_from_its_prev_copy_with_a_warning(cli, trained_copy):
    last = trained_copy.folders[0] / "checkpoints" / "last.pt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    last.write_bytes(bytes(data))
    result = cli("eval", trained_copy.run_ids[0], "--checkpoint", "last", "--json",
                 "--results-dir", trained_copy.root, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = EvalReport.model_validate_json(result.stdout)
    assert report.step == 4  # last.prev.pt: saved after the first epoch
    (warning,) = result.stderr.splitlines()
    assert warning.startswith(f"warning: {last}: ")
    assert warning.endswith("using last.prev.pt (step 4) instead")
    assert report.fallback == warning.removeprefix("warning: ")
