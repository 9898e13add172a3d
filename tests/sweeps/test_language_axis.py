"""A folder of languages as a sweep axis: a glob of AT&T files (MLRegTest layout, with a symbol
table using `<EPS> 0`) or of experiment TOMLs expands into one cell per file, named after it,
and `report --by language` groups the runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fsmrun.cli import app
from fsmrun.lang.build import build_dfa
from fsmrun.schemas.sweep import Report, SweepSpec
from fsmrun.sweeps.spec import SweepError, expand, spec_size

# Three languages over {a, b} as MLRegTest writes them: transducer arcs (in = out) with tabs,
# final-state lines, labels from a shared symbol table whose id 0 is epsilon.
LANGUAGES = {
    "02.02.SL.2.1.0.att": "0\t1\ta\ta\n0\t0\tb\tb\n1\t1\ta\ta\n1\t2\tb\tb\n"
    "2\t1\ta\ta\n2\t0\tb\tb\n2\n",
    "02.02.SP.2.1.1.att": "0\t0\ta\ta\n0\t1\tb\tb\n1\t1\ta\ta\n1\t1\tb\tb\n1\n",
    "02.02.LT.2.1.2.att": "0\t1\ta\ta\n1\t0\ta\ta\n0\t0\tb\tb\n1\t1\tb\tb\n0\n",
}
SYMBOLS = "<EPS>\t0\na\t97\nb\t98\n"
TINY = {
    "data.n_train": 32, "data.n_val": 16, "data.n_test": 16, "data.n_test_ood": 16,
    "data.max_len": 8, "data.ood_min_len": 9, "data.ood_max_len": 10, "model.arch": "lstm",
    "model.d_model": 8, "train.epochs": 1, "train.batch_size": 16, "train.warmup_steps": 1,
}  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    languages = tmp_path / "languages"
    languages.mkdir()
    for name, text in LANGUAGES.items():
        (languages / name).write_text(text)
    (languages / "alph2.txt").write_text(SYMBOLS)
    return languages


def test_a_glob_of_att_files_is_one_cell_per_file_per_grid_value_and_seed(folder):
    spec = SweepSpec(
        name="mlr", experiments=["regex_a"], languages=str(folder / "*.att"),
        symbols=str(folder / "alph2.txt"), grid={"model.arch": ["transformer", "lstm"]},
        seeds=[0, 1],
    )  # fmt: skip
    cells = expand(spec)
    assert len(cells) == spec_size(spec) == 3 * 2 * 2
    stems = ["02.02.LT.2.1.2", "02.02.SL.2.1.0", "02.02.SP.2.1.1"]  # sorted file names
    assert [c.config.name for c in cells[::4]] == stems
    first = cells[0].config
    assert first.data.att.path == str(folder / "02.02.LT.2.1.2.att")
    assert first.data.att.isymbols == str(folder / "alph2.txt")
    assert first.data.regex is None and first.data.n_train == 2000  # regex_a's corpus size
    assert cells[0].experiment == f"regex_a@{folder / '02.02.LT.2.1.2.att'}"
    assert len({c.config_hash for c in cells}) == 12
    # The file's language, not regex_a's: an even number of a's (LT), some b (SP).
    lt = build_dfa(first.data)
    assert [lt.accepts(s) for s in ("", "a", "aba", "bab")] == [True, False, True, False]
    sp = build_dfa(cells[8].config.data)
    assert [sp.accepts(s) for s in ("", "aa", "ab")] == [False, False, True]


def test_a_symbol_table_beside_each_file_is_found(folder):
    (folder / "alph2.txt").rename(folder / "02.02.SP.2.1.1.syms")
    spec = SweepSpec(name="mlr", experiments=["regex_a"], languages=str(folder / "*SP*"))
    (cell,) = expand(spec)  # the .syms file is a table, not a language
    assert cell.config.data.att.isymbols == str(folder / "02.02.SP.2.1.1.syms")


def test_a_glob_of_experiment_tomls_adds_each_as_an_experiment(tmp_path):
    for stem, regex in (("ends_b", "(a|b)*b"), ("starts_a", "a(a|b)*")):
        (tmp_path / f"{stem}.toml").write_text(f'[data]\nregex = "{regex}"\nalphabet = "ab"\n')
    spec = SweepSpec(name="t", languages=str(tmp_path / "*.toml"), seeds=[0, 1, 2])
    cells = expand(spec)
    assert [c.config.name for c in cells] == ["ends_b"] * 3 + ["starts_a"] * 3
    assert spec_size(spec) == 6


def test_language_globs_that_cannot_expand_say_why(folder, tmp_path):
    with pytest.raises(SweepError, match="no file matches"):
        expand(SweepSpec(name="t", experiments=["regex_a"], languages=str(tmp_path / "*.fst")))
    with pytest.raises(SweepError, match="need an experiment"):
        expand(SweepSpec(name="t", languages=str(folder / "*.att")))


def test_a_language_sweep_runs_and_reports_by_language(folder, tmp_path):
    results = tmp_path / "results"
    sets = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]
    runner = CliRunner()
    swept = runner.invoke(
        app,
        ["sweep", "regex_a", "--languages", str(folder / "*L*.att"), "--symbols",
         str(folder / "alph2.txt"), "--name", "mlr", "--workers", "1", *sets,
         "--results-dir", str(results)],
    )  # fmt: skip
    assert swept.exit_code == 0, swept.output
    report = runner.invoke(
        app, ["report", "mlr", "--by", "language", "--json", "--results-dir", str(results)]
    )
    assert report.exit_code == 0, report.output
    rows = Report.model_validate_json(report.stdout).rows
    assert [(r.group, r.n_runs) for r in rows] == [
        ({"language": "02.02.LT.2.1.2"}, 1),
        ({"language": "02.02.SL.2.1.0"}, 1),
    ]
