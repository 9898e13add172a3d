"""`fsmrun fsm`'s decisions in core: which one language source the options name, and the
string counts by length (hand-counted)."""

from __future__ import annotations

import pytest

from fsmrun.base.errors import UserError
from fsmrun.lang.options import LanguageOptions, counts_by_length, dfa_from_options
from fsmrun.lang.sources import SourceError


def test_a_regex_with_its_alphabet_builds_the_minimal_dfa():
    dfa, label = dfa_from_options(LanguageOptions(source="(a|b)*ab", alphabet="ab"))
    assert label == "regex '(a|b)*ab'"
    assert dfa.num_states == 3 and dfa.dead is None  # (a|b)*ab: no dead state


def test_an_experiment_file_and_a_random_dfa_are_sources_too(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text('name = "e"\n[data]\nregex = "(ab)*"\nalphabet = "ab"\n')
    dfa, label = dfa_from_options(LanguageOptions(source=str(path)))
    assert label == "experiment 'e'" and dfa.num_states == 3  # with the dead state
    dfa, label = dfa_from_options(LanguageOptions(random=4, alphabet="ab", seed=5))
    assert label == "random DFA (seed 5)" and dfa.num_states == 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (LanguageOptions(), "give exactly one language source.*got none"),
        (LanguageOptions(source="a", alphabet="ab", random=3), r"got SOURCE, --random\)"),
        (LanguageOptions(source="a", isymbols="s.txt"), "--isymbols only goes with --att"),
        (LanguageOptions(source="(ab)*"), "a regex needs --alphabet"),
        (LanguageOptions(random=3), "--random needs --alphabet"),
    ],
)
def test_options_that_name_no_single_language_are_refused(options, message):
    with pytest.raises(UserError, match=message):
        dfa_from_options(options)


def test_a_dfa_table_file_is_checked_as_a_data_dfa_table_at_its_top_level(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('states = ["s"]\nstart = "s"\naccepting = ["s"]\n')
    with pytest.raises(SourceError, match=r"t.toml: invalid DFA table: transitions: Field requ"):
        dfa_from_options(LanguageOptions(dfa_file=path))
    # even number of a's over {a, b}: two states, no dead one
    path.write_text(
        'states = ["e", "o"]\nstart = "e"\naccepting = ["e"]\n'
        '[transitions]\ne = { a = "o", b = "e" }\no = { a = "e", b = "o" }\n'
    )
    dfa, label = dfa_from_options(LanguageOptions(dfa_file=path))
    assert dfa.num_states == 2 and label == f"table {str(path)!r}"


def test_counts_by_length_are_exact():
    dfa, _ = dfa_from_options(LanguageOptions(source="(a|b)*ab", alphabet="ab"))
    accepting = [q for q in range(dfa.num_states) if dfa.accepting[q]]
    accepted = [sum(row[q] for q in accepting) for row in counts_by_length(dfa, 5)]
    assert accepted == [0, 0, 1, 2, 4, 8]  # length n >= 2: any n-2 symbols, then ab
    assert [sum(row) for row in counts_by_length(dfa, 70)][-1] == 2**70  # beyond int64
