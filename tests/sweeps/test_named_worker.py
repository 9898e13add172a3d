"""A cell task may name another worker than training ("module:function"): the executors run
it like a training cell; an import failure is that cell's failure, not the sweep's."""

from __future__ import annotations

from fsmrun.sweeps.executors import CellTask, SerialExecutor, run_cell


def test_a_named_worker_runs_instead_of_training(tmp_path):
    # The analysis worker refuses a folder that is no run: its own outcome, no training.
    from fsmrun.analysis.batch import options_to_json
    from fsmrun.analysis.run_analysis import AnalyzeOptions

    task = CellTask(
        index=3,
        config_json=options_to_json(AnalyzeOptions()),
        results_root=str(tmp_path),
        resume_dir=str(tmp_path / "nope"),
        worker="fsmrun.analysis.batch:analyze_cell",
    )
    outcome = run_cell(task)
    assert (outcome.index, outcome.status) == (3, "refused")
    assert "is not a run folder (no run.json)" in outcome.error
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_worker_that_cannot_be_imported_fails_its_cell_only(tmp_path):
    tasks = [
        CellTask(index=i, config_json="{}", results_root=str(tmp_path), worker="fsmrun.nope:go")
        for i in range(2)
    ]
    seen = []
    SerialExecutor().run(tasks, seen.append)
    assert [(o.index, o.status) for o in seen] == [(0, "failed"), (1, "failed")]
    assert seen[0].error.startswith("ModuleNotFoundError: No module named 'fsmrun.nope'")


def test_a_named_worker_in_the_callers_process_leaves_its_thread_count_as_it_was(tmp_path):
    # The serial executor runs the worker in the calling process: the cell's count is pinned
    # for the cell only.
    import torch

    from fsmrun.analysis.batch import options_to_json
    from fsmrun.analysis.run_analysis import AnalyzeOptions

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    task = CellTask(
        index=0,
        config_json=options_to_json(AnalyzeOptions()),
        results_root=str(tmp_path),
        resume_dir=str(tmp_path / "nope"),
        worker="fsmrun.analysis.batch:analyze_cell",
        threads=other,
    )
    assert run_cell(task).status == "refused"
    assert torch.get_num_threads() == before
