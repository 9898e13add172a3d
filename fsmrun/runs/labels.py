"""Tags (`key=value`) and a note on a run, kept in `<run>/labels.json` beside its data files:
parsing them from the command line, labelling a run folder (index row included) and
selecting runs by tag. A completed run's data files never change; labels.json may."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from fsmrun.base.errors import UserError, describe_validation_error
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.records import RunLabels

log = logging.getLogger(__name__)

TAG_PREFIX = "tag."  # `report --by tag.KEY`, `ls --tag KEY=VALUE`


class LabelError(UserError):
    """A tag or note a user can fix."""


def parse_tags(assignments: Iterable[str], option: str = "--tag") -> dict[str, str]:
    """['paper=v2', 'lr=high'] -> {'paper': 'v2', 'lr': 'high'}, each checked like labels.json;
    LabelError naming `option` for a bad one."""
    tags: dict[str, str] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise LabelError(f"{option} expects key=value (e.g. {option} paper=v2), got "
                             f"{assignment!r}")  # fmt: skip
        tags[key.strip()] = value.strip()
    return checked_labels(tags, "", option).tags


def checked_labels(tags: dict[str, str], note: str, option: str = "--tag") -> RunLabels:
    """RunLabels of `tags` and `note`; LabelError naming `option` when they are not valid."""
    try:
        return RunLabels(tags=tags, note=note)
    except ValidationError as err:
        raise LabelError(describe_validation_error(err, f"invalid {option}")) from None


def label_run(
    folder: str | os.PathLike[str],
    tags: dict[str, str],
    *,
    remove: tuple[str, ...] = (),
    note: str | None = None,
) -> RunLabels:
    """Change a run's labels (RunFolder.label: under its lock, atomically), then its index
    row (a warning if the index cannot be written). The new labels."""
    from fsmrun.runs.index import RunIndex  # the index is built on this module's neighbours
    from fsmrun.runs.layout import ResultsFolderError

    run = RunFolder(folder)
    try:
        labels = run.label(tags, remove=remove, note=note)
    except ValidationError as err:
        raise LabelError(describe_validation_error(err, "invalid labels")) from None
    try:
        RunIndex(run.results_root).upsert_folder(run.path)
    except ResultsFolderError as err:
        log.warning("run index not updated (%s)", err)
    return labels


def matches_tags(tags: dict[str, str], wanted: dict[str, str]) -> bool:
    """Whether a run with `tags` carries every wanted key with its value ('' = any value)."""
    return all(key in tags and (value == "" or tags[key] == value) for key, value in wanted.items())


def tag_value(tags: dict[str, str], field: str) -> str | None:
    """The value of `tag.KEY` in `tags` (None when the run has no such tag)."""
    return tags.get(field.removeprefix(TAG_PREFIX))


def is_tag_field(field: str) -> bool:
    return field.startswith(TAG_PREFIX) and len(field) > len(TAG_PREFIX)


def labelled_folders(folders: Iterable[Path], wanted: dict[str, str]) -> list[Path]:
    """The folders whose labels match `wanted`."""
    return [f for f in folders if matches_tags(RunFolder(f).read_labels().tags, wanted)]


def labels_line(labels: RunLabels) -> str:
    """'tags: a=1, b=2' and 'note: ...' lines (or 'tags: none')."""
    tags = ", ".join(f"{k}={v}" for k, v in labels.tags.items()) or "none"
    return f"tags:      {tags}" + (f"\nnote:      {labels.note}" if labels.note else "")
