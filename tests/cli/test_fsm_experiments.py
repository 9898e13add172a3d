"""`fsmrun fsm` and `fsmrun experiments`."""

from __future__ import annotations

from fsmrun.core.fsm import compile_regex


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


def test_experiments_lists_builtins_with_their_dfa_sizes(cli):
    result = cli("experiments")
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert {"regex_a", "regex_b", "parity", "tomita1"} <= lines.keys()
    assert "(a|b)*ab" in lines["regex_a"] and " 3 " in lines["regex_a"]
    assert " 2 " in lines["parity"]
