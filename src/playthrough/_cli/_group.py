"""The ``playthrough`` group; each module of this package adds its commands to it."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="playthrough")
def main() -> None:
    """playthrough: event-sourced states, where every load is a playthrough of one log."""
