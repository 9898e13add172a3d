"""`fsmrun fsm` and `fsmrun experiments`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fsmrun.lang.fsm import compile_regex
from fsmrun.lang.sources import random_dfa

CYCLE_TABLE = """\
states = ["p0", "p1", "p2", "p3", "p4"]
start = "p0"
outputs = { p0 = 0, p1 = 1, p2 = 2, p3 = 3, p4 = 4 }
[transitions]
p0 = { 0 = "p0", 1 = "p1", 2 = "p4" }
p1 = { 0 = "p1", 1 = "p2", 2 = "p0" }
p2 = { 0 = "p2", 1 = "p3", 2 = "p1" }
p3 = { 0 = "p3", 1 = "p4", 2 = "p2" }
p4 = { 0 = "p4", 1 = "p0", 2 = "p3" }
"""
ENDS_AB_ATT = "0\t1\ta\ta\n0\t0\tb\tb\n1\t1\ta\ta\n1\t2\tb\tb\n2\t1\ta\ta\n2\t0\tb\tb\n2\n"


def test_fsm_summary_shows_states_dead_state_and_counts(cli):
    result = cli("fsm", "(ab|ba)*c?", "--alphabet", "abc", "--max-len", "4")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "5 states" in out and "dead state: 4" in out
    # accepted strings of lengths 0..4: "", "c", ab/ba, abc/bac, 4 of length 4
    rows = [line.split("│")[1:4] for line in out.splitlines() if line.count("│") == 5]
    counts = {int(r[0]): int(r[1]) for r in rows if r[0].strip().isdigit()}
    assert counts == {0: 1, 1: 1, 2: 2, 3: 2, 4: 4}


def test_fsm_dot_prints_graphviz_only(cli):
    result = cli("fsm", "(a|b)*ab", "--alphabet", "ab", "--dot")
    assert result.exit_code == 0, result.output
    assert result.stdout == compile_regex("(a|b)*ab", "ab").to_dot()


def test_fsm_reads_an_att_file_with_its_symbol_table(cli, tmp_path):
    (tmp_path / "l.att").write_text(ENDS_AB_ATT)
    (tmp_path / "syms.txt").write_text("<eps> 0\na 1\nb 2\n")
    result = cli("fsm", "--att", str(tmp_path / "l.att"), "--isymbols", str(tmp_path / "syms.txt"),
                 "--dot")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == compile_regex("(a|b)*ab", "ab").to_dot()


def test_fsm_shows_a_moore_table_with_outputs_and_counts_by_output(cli, tmp_path):
    (tmp_path / "cycle.toml").write_text(CYCLE_TABLE)
    result = cli("fsm", "--dfa", str(tmp_path / "cycle.toml"), "--max-len", "2")
    assert result.exit_code == 0, result.output
    assert "5 states" in result.stdout and "5 outputs" in result.stdout
    rows = [line.split("│")[1:-1] for line in result.stdout.splitlines() if line.count("│") == 7]
    by_length = {int(r[0]): [int(c) for c in r[1:]] for r in rows if r[0].strip().isdigit()}
    # length 2 over stay/+1/-1: net 0 three ways, +1 and -1 two ways, +2 and -2 one way
    assert by_length == {0: [1, 0, 0, 0, 0], 1: [1, 1, 0, 0, 1], 2: [3, 2, 1, 1, 2]}


def test_fsm_draws_a_random_dfa_for_a_seed(cli):
    result = cli("fsm", "--random", "5", "--alphabet", "ab", "--seed", "3", "--dot")
    assert result.exit_code == 0, result.output
    assert result.stdout == random_dfa(5, "ab", 0.5, 3).to_dot()


def test_fsm_takes_an_experiment_file(cli, tiny_toml):
    result = cli("fsm", str(tiny_toml), "--dot")
    assert result.exit_code == 0, result.output
    assert result.stdout == compile_regex("(a|b)*ab", "ab").to_dot()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["(ab)*"], "error: a regex needs --alphabet"),
        (["a", "--alphabet", "ab", "--random", "3"], "error: give exactly one language source"),
        ([], "(got none)"),
        (["--random", "3", "--alphabet", "ab", "--accepting-fraction", "1"], "all states are"),
        (["--att", "{tmp}/bad.att"], "error: {tmp}/bad.att:2: state 'x' must be a non-negative"),
        (["--dfa", "{tmp}/bad.toml"], "invalid DFA table: transitions: Field required"),
    ],
)
def test_fsm_source_errors_are_one_line_and_exit_2(cli, tmp_path, args, message):
    (tmp_path / "bad.att").write_text("0 1 a\nx 1 a\n")
    (tmp_path / "bad.toml").write_text('states = ["s"]\nstart = "s"\naccepting = ["s"]\n')
    result = cli("fsm", *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert message.format(tmp=tmp_path) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_language_sources_load_without_torch():
    code = "import sys, fsmrun.lang.sources, fsmrun.experiments; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_experiments_lists_builtins_with_their_dfa_sizes(cli):
    result = cli("experiments")
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert {"regex_a", "regex_b", "parity", "tomita1"} <= lines.keys()
    assert "(a|b)*ab" in lines["regex_a"] and " 3 " in lines["regex_a"]
    assert " 2 " in lines["parity"]


def test_experiments_also_lists_the_sweep_suites(cli):
    result = cli("experiments")
    assert result.exit_code == 0, result.output
    after = result.stdout.split("suites (fsmrun sweep SUITE):")[1]
    lines = {line.split("│")[1].strip(): line for line in after.splitlines() if "│" in line}
    assert {"tomita", "deletang_regular"} <= lines.keys()
    assert " 42 " in lines["tomita"]  # 7 languages x 2 architectures x 3 seeds


def test_fsm_max_len_above_the_cap_is_refused_before_anything_is_printed(cli):
    result = cli("fsm", "(a|b)*", "--alphabet", "ab", "--max-len", "100000")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: Invalid value for '--max-len'")
    assert "1000" in result.stderr and len(result.stderr.splitlines()) == 1


def test_fsm_counts_at_the_max_len_cap_print_in_scientific_notation(cli):
    result = cli("fsm", "(a|b)*", "--alphabet", "ab", "--max-len", "1000")
    assert result.exit_code == 0, result.output
    rows = [line.split("│")[1:5] for line in result.stdout.splitlines() if line.count("│") == 5]
    counts = {r[0].strip(): [c.strip() for c in r[1:]] for r in rows if r[0].strip().isdigit()}
    assert counts["10"] == ["1024", "1024", "1.0000"]
    assert counts["49"] == ["562949953421312", "562949953421312", "1.0000"]  # 15 digits: exact
    assert counts["50"] == ["1.1259e+15", "1.1259e+15", "1.0000"]  # 2**50 = 1125899906842624
    assert counts["1000"] == ["1.0715e+301", "1.0715e+301", "1.0000"]  # no float overflow


def test_fsm_state_cap_error_names_the_option_and_the_config_field(cli):
    result = cli("fsm", "(a|b)*a(a|b)(a|b)", "--alphabet", "ab", "--max-states", "3")
    assert result.exit_code == 2, result.output
    assert "--max-states" in result.stderr and "data.max_states" in result.stderr
    assert "pass max_states=" not in result.stderr and "DataConfig" not in result.stderr


def test_fsm_checks_the_alphabet_like_an_experiment_config(cli):
    result = cli("fsm", "a", "--alphabet", "a b")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: invalid --alphabet: alphabet: symbol ' ' is not")
    result = cli("fsm", "a", "--alphabet", "aa")
    assert result.exit_code == 2 and "appears twice" in result.stderr, result.output


def test_usage_errors_are_one_error_line_without_the_usage_block(cli):
    for args, message in [
        (["trian"], "error: No such command 'trian'. Did you mean 'train'? (see `fsmrun --help`)"),
        (["train"], "error: Missing argument 'EXP'. (see `fsmrun train --help`)"),
        (["eval", "x", "--checkpoint", "first"], "error: Invalid value for '--checkpoint': "
         "'first' is not one of 'best', 'last'. (see `fsmrun eval --help`)"),
    ]:  # fmt: skip
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr == message + "\n"
        assert result.stdout == ""
