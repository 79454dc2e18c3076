"""``shopsearch reindex | promote | rollback | status``: model rollout from the command line.

``register(group)`` adds the commands to the ``shopsearch`` group (``cli.py`` calls it). The
rollout itself is ``shopsearch.rollout``; these commands run it in this process (like
``shopsearch ingest``: the encoding happens on the Celery workers) and translate its errors
into one-line messages with a non-zero exit.
"""

from __future__ import annotations

import json
from functools import wraps

import click

from .settings import Settings


def _print(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _fail_cleanly(fn):
    """The rollout's and the cluster's errors as one-line CLI errors (this boundary only)."""
    from opensearchpy.exceptions import ConnectionError as OSConnectionError

    from .encoders import EncoderError
    from .index_mapping import MappingError
    from .indices import IndexVersionError
    from .rollout import RolloutError

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (RolloutError, IndexVersionError, MappingError, EncoderError) as e:
            raise click.ClickException(str(e)) from None
        except OSConnectionError:
            raise click.ClickException("OpenSearch cannot be reached: start it with `shopsearch services up`") from None
    return wrapper


@click.command("reindex")
@click.option("--catalogue", required=True, help="Catalogue (alias) to build a new version of.")
@click.option("--model", help="Model registry version, model directory or package name (default: the live version's).")
@click.option("--source", type=click.Path(exists=True, dir_okay=False),
              help="Catalogue file to read (default: reuse the live version's cleaned documents).")
@click.option("--mapping", help="Field mapping of --source (as for ingest).")
@click.option("--images", type=click.Path(exists=True, file_okay=False), help="Directory image paths of --source are relative to.")
@click.option("--limit", type=int, help="Read at most N records of --source.")
@click.option("--no-swap", is_flag=True, help="Stop once the new version is verified (promote it later).")
@click.pass_obj
@_fail_cleanly
def reindex_cmd(settings: Settings, catalogue: str, model: str | None, source: str | None, mapping: str | None,
                images: str | None, limit: int | None, no_swap: bool) -> None:
    """Build <catalogue>-v<N+1> with a new model or fresh data, verify it, swap the alias.

    Run it again after a crash: it resumes the unfinished version for the same model and source.
    """
    from tqdm import tqdm

    from .rollout import reindex
    bar = tqdm(total=0, unit="item", desc="encode+index")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        state = reindex(settings, catalogue, model, source, mapping, on_progress=progress, images=images,
                        limit=limit, swap=not no_swap)
    finally:
        bar.close()
    _print(state)
    if state["step"] != "swapped" and not no_swap:
        raise click.ClickException(f"{state['index']} stopped at step {state['step']}")


@click.command("promote")
@click.option("--catalogue", required=True)
@click.argument("version")
@click.pass_obj
@_fail_cleanly
def promote_cmd(settings: Settings, catalogue: str, version: str) -> None:
    """Point the alias at VERSION (<catalogue>-vN, vN or N); refuses an unverified or empty one."""
    from .rollout import promote
    result = promote(settings, catalogue, version)
    click.echo(f"{catalogue}: {result['previous']} -> {result['index']} ({result['model_version']})")


@click.command("rollback")
@click.option("--catalogue", required=True)
@click.pass_obj
@_fail_cleanly
def rollback_cmd(settings: Settings, catalogue: str) -> None:
    """Point the alias back at the version that was live before, in one step."""
    from .rollout import rollback
    result = rollback(settings, catalogue)
    click.echo(f"{catalogue}: {result['previous']} -> {result['index']} ({result['model_version']})")


@click.command("status")
@click.option("--catalogue", help="One catalogue (default: every catalogue with versions).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole status as JSON.")
@click.pass_obj
@_fail_cleanly
def status_cmd(settings: Settings, catalogue: str | None, as_json: bool) -> None:
    """Alias -> index -> model, document counts, every version's rollout state, last click-log event."""
    from .rollout import status
    found = status(settings, catalogue)
    if as_json:
        _print(found)
        return
    for name, c in found["catalogues"].items():
        click.echo(f"{name} -> {c['live'] or '(no live index)'}  model={c['model_version'] or '-'}  docs={c['docs']}  "
                   f"previous={c['previous'] or '-'}  events={c['events']} (last {c['last_event'] or '-'})")
        for v in c["versions"]:
            step = v["rollout"].get("step", "-")
            click.echo(f"  {'*' if v['live'] else ' '} {v['index']:30} docs={v['docs']:<9} step={step:9} "
                       f"model={v['model_version'] or '?'}")


COMMANDS = (reindex_cmd, promote_cmd, rollback_cmd, status_cmd)


def register(group: click.Group) -> None:
    """Add the rollout commands to ``group`` (the ``shopsearch`` command group)."""
    for command in COMMANDS:
        group.add_command(command)
