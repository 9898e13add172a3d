"""The one door for languages: `build_dfa` turns a data config into its minimal DFA, whatever
its source (regex, DFA table, AT&T file, random DFA); every source shares one minimisation."""

from __future__ import annotations

from fsmrun.lang.fsm import DFA, compile_regex
from fsmrun.lang.sources import dfa_from_table, random_dfa, read_att
from fsmrun.schemas.config import DataConfig


def build_dfa(data_cfg: DataConfig) -> DFA:
    """The minimal complete DFA (or Moore machine) of the language `data_cfg` defines.

    AT&T paths are read relative to the current directory. Raises RegexError, SourceError or
    StateLimitError (all UserErrors) with a message for the user.
    """
    d = data_cfg
    if d.regex is not None:
        return compile_regex(d.regex, d.alphabet or "", max_states=d.max_states)
    if d.dfa is not None:
        return dfa_from_table(d.dfa, d.alphabet, max_states=d.max_states)
    if d.att is not None:
        return read_att(d.att.path, d.att.isymbols, alphabet=d.alphabet, max_states=d.max_states)
    assert d.random_dfa is not None  # DataConfig requires exactly one source
    r = d.random_dfa
    return random_dfa(r.num_states, d.alphabet or "", r.accepting_fraction, r.seed)
