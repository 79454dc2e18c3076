"""The docs keep up with the code, name for name: every CLI command in the README, every module,
extension point and Celery task in ARCHITECTURE (the settings table: ``test_settings.py``).

Names are matched whole (``shopsearch/query/searcher.py``, ``shopsearch bench ingest``), never as
substrings, so "shop" does not count as naming ``shopsearch``.
"""

import re

import click
import pytest

from shopsearch import hooks
from shopsearch.cli import main
from shopsearch.workers import tasks as celery_tasks

from .conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
ARCHITECTURE = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")


def named(text: str, name: str) -> bool:
    """``name`` stands in ``text`` as a whole token (not inside a longer name or path)."""
    return re.search(r"(?<![\w/.-])" + re.escape(name) + r"(?![\w/-]|\.\w)", text) is not None


def commands(group: click.Group, prefix: str = "shopsearch"):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from commands(cmd, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}"


def module_paths():
    for folder in ("shopsearch", "plugin", "workers"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if path.name == "__init__.py":
                if len(path.read_text(encoding="utf-8").strip().splitlines()) > 3:
                    yield rel.removesuffix("__init__.py")  # a package whose __init__ holds code: its folder
                continue
            if path.name != "__main__.py":
                yield rel


@pytest.mark.parametrize("command", sorted(commands(main)))
def test_the_readme_names_every_cli_command(command):
    assert named(README, command), f"`{command}` is not in README.md"


@pytest.mark.parametrize("path", sorted(module_paths()))
def test_architecture_names_every_module_by_its_path(path):
    assert named(ARCHITECTURE, path), f"{path} is not named in docs/ARCHITECTURE.md"


@pytest.mark.parametrize("hook", sorted(n for n in vars(hooks.Specs) if not n.startswith("_")))
def test_architecture_names_every_extension_point(hook):
    assert named(ARCHITECTURE, hook), f"extension point {hook} is not in docs/ARCHITECTURE.md"


@pytest.mark.parametrize("task", sorted(t for t in celery_tasks.app.tasks if t.startswith("shopsearch.")))
def test_architecture_names_every_celery_task(task):
    assert named(ARCHITECTURE, task), f"Celery task {task} is not in docs/ARCHITECTURE.md"


def test_the_name_matcher_matches_whole_names_only():
    assert named("see `shopsearch/query/searcher.py`.", "shopsearch/query/searcher.py")
    assert not named("shopsearch", "shop")
    assert not named("shopsearch/query/searcher.py", "query/searcher.py")
    assert not named("`shopsearch bench ingestion`", "shopsearch bench ingest")
