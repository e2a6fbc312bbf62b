"""``csvdnet node --config node.yaml`` and ``csvdnet node status --config node.yaml``."""

from __future__ import annotations

import json
import sys

import click

from csvdnet.errors import CsvdnetInputError

_CONFIG = click.option("--config", "config_path", required=True,
                       type=click.Path(exists=True, dir_okay=False),
                       help="The node's YAML settings (README: Running beside a PACS).")


@click.group(invoke_without_command=True)
@click.option("--config", "config_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="The node's YAML settings (README: Running beside a PACS).")
@click.pass_context
def node(ctx: click.Context, config_path: str | None) -> None:
    """Run csvdnet as a DICOM node: receive studies (C-STORE), rate each once it is complete,
    store the SEG / SR / report objects back to the destinations."""
    if ctx.invoked_subcommand is not None:
        return
    if config_path is None:
        raise click.UsageError("--config node.yaml is required")
    from csvdnet.fsutil import FolderLocked
    from csvdnet.node.config import load_config
    from csvdnet.node.service import run_node

    try:
        config = load_config(config_path)
        from csvdnet.tfimport import import_tensorflow

        import_tensorflow()
        run_node(config)
    except CsvdnetInputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except FolderLocked as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@node.command()
@_CONFIG
@click.option("--json", "as_json", is_flag=True, help="The summary as JSON.")
def status(config_path: str, as_json: bool) -> None:
    """Queue counts, the last error and per-study timings of a node (running or not)."""
    from csvdnet.node.config import load_config
    from csvdnet.node.queue import read_records
    from csvdnet.node.status import format_status, summarize

    try:
        config = load_config(config_path)
    except CsvdnetInputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    summary = summarize(read_records(config.state_dir))
    click.echo(json.dumps(summary, indent=1) if as_json else format_status(summary))
