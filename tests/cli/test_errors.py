"""User mistakes end in one `error:` line on stderr, exit code 2, and nothing written."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
import torch

import fsmrun.train.loop as loop
from fsmrun.train.loop import RunResult


def assert_user_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    err = result.stderr
    assert err.startswith("error: "), err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_unknown_experiment_suggests_the_close_name(cli, tmp_path):
    result = cli("train", "regex_aa", "--results-dir", tmp_path / "r")
    assert_user_error(result, "regex_aa", "did you mean 'regex_a'")
    assert not (tmp_path / "r").exists()


def test_malformed_toml_names_the_file(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[data\nregex = "a"\n')
    assert_user_error(cli("train", bad, "--results-dir", tmp_path / "r"), "bad.toml", "TOML")


def test_unknown_set_key_names_it_and_the_valid_keys(cli, tiny_toml, tmp_path):
    result = cli("train", tiny_toml, "--set", "train.lrr=0.1", "--results-dir", tmp_path / "r")
    err = assert_user_error(result, "'train.lrr'", "did you mean lr", "valid keys under train")
    assert "batch_size" in err and "weight_decay" in err
    assert not (tmp_path / "r").exists()


def test_unknown_top_level_set_key_lists_the_sections(cli, tiny_toml, tmp_path):
    result = cli("train", tiny_toml, "--set", "trian.lr=0.1", "--results-dir", tmp_path / "r")
    assert_user_error(result, "'trian.lr'", "did you mean train", "data, model, train")


def test_invalid_value_names_the_field(cli, tiny_toml, tmp_path):
    result = cli("train", tiny_toml, "--lr", "-1", "--results-dir", tmp_path / "r")
    assert_user_error(result, "train.lr", "greater than 0")
    assert not (tmp_path / "r").exists()


def test_state_cap_is_a_user_error_and_claims_no_run_folder(cli, tiny_toml, tmp_path):
    root = tmp_path / "r"
    result = cli("train", tiny_toml, "--set", "data.max_states=2", "--results-dir", root)
    assert_user_error(result, "2")
    assert not (root / "tiny").exists()


def test_too_small_language_is_reported_before_a_run_folder_exists(cli, tiny_toml, tmp_path):
    root = tmp_path / "r"
    result = cli("train", tiny_toml, "--set", "data.regex=(ab)*", "--results-dir", root)
    assert_user_error(result, "(ab)*", "n_train")
    assert not (root / "tiny").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_a_user_error(cli, tiny_toml, tmp_path):
    result = cli("train", tiny_toml, "--device", "cuda", "--results-dir", tmp_path / "r")
    assert_user_error(result, "CUDA is not available")
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_results_dir_is_a_user_error(cli, tiny_toml, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = cli("train", tiny_toml, "--results-dir", locked / "results")
        assert_user_error(result, str(locked / "results"), "--results-dir")
    finally:
        locked.chmod(0o755)


def test_results_dir_under_a_file_is_a_user_error(cli, tiny_toml, tmp_path):
    (tmp_path / "file").write_text("")
    result = cli("train", tiny_toml, "--results-dir", tmp_path / "file" / "results")
    assert_user_error(result, "cannot create the results folder", "--results-dir")


def test_unknown_run_is_a_user_error(cli, trained):
    result = cli("show", "nosuchrun", "--results-dir", trained.root)
    assert_user_error(result, "no run 'nosuchrun'")


def test_bad_regex_shows_the_caret_line(cli):
    err = assert_user_error(cli("fsm", "a(b", "--alphabet", "ab"), "a(b")
    assert "^" in err


def test_ctrl_c_exits_130_and_says_how_to_resume(cli, tiny_toml, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train_one_experiment", interrupted)
    result = cli("train", tiny_toml, "--results-dir", tmp_path / "r")
    assert result.exit_code == 130, result.output
    assert "fsmrun resume" in result.stderr and "Traceback" not in result.output


def test_interrupted_run_exits_130_with_the_resume_command(cli, tiny_toml, tmp_path, monkeypatch):
    stopped = RunResult("tiny-abc-v1", tmp_path / "r" / "tiny" / "abc" / "v1", "interrupted",
                        "interrupted", None, 3)  # fmt: skip
    monkeypatch.setattr(loop, "train_one_experiment", lambda *a, **k: stopped)
    result = cli("train", tiny_toml, "--results-dir", tmp_path / "r")
    assert result.exit_code == 130, result.output
    assert f"fsmrun resume tiny-abc-v1 --results-dir {tmp_path / 'r'}" in result.stderr


def test_subprocess_user_error_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fsmrun", "train", "parityy", "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "did you mean 'parity'" in proc.stderr
    assert proc.stdout == ""


def test_disk_full_is_one_line_naming_the_file_and_exit_1(cli, tmp_path, monkeypatch):
    import fsmrun.cli.ls as ls_cmd

    def full(root):
        raise OSError(errno.ENOSPC, "No space left on device", str(root / "registry.sqlite"))

    monkeypatch.setattr(ls_cmd, "RunIndex", full)
    result = cli("ls", "--results-dir", tmp_path)
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"error: cannot access {tmp_path / 'registry.sqlite'}: No space left on device\n"
    )


def test_a_bug_is_not_disguised_as_a_user_error(cli, tmp_path, monkeypatch):
    import fsmrun.cli.ls as ls_cmd

    def bug(root):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(ls_cmd, "RunIndex", bug)
    result = cli("ls", "--results-dir", tmp_path)
    assert result.exit_code == 1
    assert isinstance(result.exception, ValueError)  # propagates: the traceback is shown
    assert "error:" not in result.stderr


def test_ctrl_c_in_a_light_command_exits_130_without_traceback(cli, tmp_path, monkeypatch):
    import fsmrun.cli.ls as ls_cmd

    def interrupted(root):
        raise KeyboardInterrupt

    monkeypatch.setattr(ls_cmd, "RunIndex", interrupted)
    result = cli("ls", "--results-dir", tmp_path)
    assert result.exit_code == 130 and "Traceback" not in result.output


def test_ctrl_c_during_start_up_exits_130(monkeypatch, capsys):
    import fsmrun.cli
    import fsmrun.cli._app as app_module

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(app_module, "app", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        fsmrun.cli.main()
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_a_failed_audit_run_is_a_user_error(cli, tiny_toml, tmp_path, monkeypatch):
    import fsmrun.analysis.audit as audit

    def failed(*args, **kwargs):
        raise audit.AuditError("run 1 ended failed (non-finite loss); lower train.lr")

    monkeypatch.setattr(audit, "audit_experiment", failed)
    result = cli("audit-determinism", tiny_toml, "--results-dir", tmp_path, "--device", "cpu")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.splitlines()[-1] == (
        "error: run 1 ended failed (non-finite loss); lower train.lr"
    )
