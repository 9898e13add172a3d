"""Every command explains itself with an example."""

from __future__ import annotations

import pytest

COMMANDS = ["train", "resume", "eval", "audit-determinism", "ls", "show", "experiments", "fsm"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command_shows_an_example(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example:" in result.stdout
    assert f"fsmrun {command}" in result.stdout


def test_top_level_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0, result.output
    for command in COMMANDS:
        assert command in result.stdout


def test_train_help_lists_the_design_options(cli):
    result = cli("train", "--help")
    assert result.exit_code == 0, result.output
    for option in (
        "--device", "--amp", "--epochs", "--batch-size", "--lr", "--patience",
        "--deterministic", "--no-deterministic", "--save-every", "--seed", "--set",
        "--results-dir", "--overwrite",
    ):  # fmt: skip
        assert option in result.stdout


def test_the_command_table_summary_is_each_commands_own_first_sentence():
    """`fsmrun --help` shows the table's summaries without importing a command; each must be
    the first sentence of the command's own help (change both together)."""
    from fsmrun.cli._app import COMMANDS, load_command

    for name, entry in COMMANDS.items():
        command = load_command(name)
        assert command.name == name
        assert command.get_short_help_str(limit=10_000) == entry.summary, name
