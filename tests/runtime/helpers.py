"""Checking that a report renders readably where there is no terminal (a pipe, a CI log: 80 columns)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from rdd_deploy.runtime.tables import print_fitted


def render_without_terminal(renderable: RenderableType, monkeypatch: pytest.MonkeyPatch) -> str:
    """What print_fitted writes to a file when COLUMNS is unset: rich's default 80 columns."""
    monkeypatch.delenv("COLUMNS", raising=False)
    console = Console(file=io.StringIO())
    assert not console.is_terminal and console.width == 80
    print_fitted(renderable, console)
    return console.file.getvalue()


def cell_texts(renderable: RenderableType) -> list[str]:
    """The plain text of every header and cell of every table in `renderable`."""
    tables = renderable.renderables if isinstance(renderable, Group) else [renderable]
    return [Text.from_markup(cell).plain if isinstance(cell, str) else cell.plain
            for table in tables if isinstance(table, Table)
            for column in table.columns for cell in (column.header, *column.cells)]


def assert_no_cell_cut(renderable: RenderableType, output: str) -> None:
    """Every cell of `renderable` appears whole on one line of `output`, and no line is wider than 80."""
    lines = output.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in output, output
    missing = [cell for cell in cell_texts(renderable) if not any(cell in line for line in lines)]
    assert not missing, f"cells cut or wrapped: {missing}\n{output}"
