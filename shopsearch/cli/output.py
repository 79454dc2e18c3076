"""What the commands print and write: JSON to the terminal, figures to ``--json FILE``."""

from __future__ import annotations

import json

import click


def print_json(data) -> None:
    """``data`` as indented JSON on standard output (dates and paths as text)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def write_json(json_file: str | None, figures: dict) -> None:
    """A command's figures to ``--json FILE``, when asked for."""
    if json_file:
        with open(json_file, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)
