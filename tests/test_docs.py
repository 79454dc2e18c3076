"""The docs keep up with the code: every CLI command is in the README, every module in ARCHITECTURE."""

import click
import pytest

from shopsearch.cli import main

from .conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
ARCHITECTURE = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = "shopsearch"):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from commands(cmd, f"{prefix} {name}")
        else:
            yield prefix, name


@pytest.mark.parametrize("prefix,name", list(commands(main)))
def test_the_readme_lists_every_cli_command(prefix, name):
    lines = [line for line in README.splitlines() if prefix in line]
    assert any(name in line[line.index(prefix):] for line in lines), f"{prefix} {name} is not in README.md"


@pytest.mark.parametrize("module", sorted(p.name for p in (ROOT / "plugin").glob("*.py") if p.name != "__init__.py"))
def test_architecture_names_every_middleware_module(module):
    assert module.removesuffix(".py") in ARCHITECTURE
