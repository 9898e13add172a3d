"""Languages: regexes, transition tables, AT&T files and random DFAs reduced to one minimal,
canonically numbered machine (no torch)."""
