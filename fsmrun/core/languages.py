"""The one door for languages: `build_dfa` turns a data config into its minimal DFA. Every
source (today a regex; DFA tables, AT&T files, random automata next) plugs in here."""

from __future__ import annotations

from fsmrun.core.fsm import DFA, compile_regex
from fsmrun.schemas.config import DataConfig


def build_dfa(data_cfg: DataConfig) -> DFA:
    """The minimal complete DFA of the language `data_cfg` defines (state cap applied).

    Raises RegexError for a malformed pattern and StateLimitError past `data_cfg.max_states`.
    """
    return compile_regex(data_cfg.regex, data_cfg.alphabet, max_states=data_cfg.max_states)
