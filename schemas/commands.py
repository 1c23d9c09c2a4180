"""`govbus schemas check | list`."""

from __future__ import annotations

import click

from govbus.schemas import writers
from govbus.schemas.compatibility import check_all
from govbus.schemas.registry import SchemaError, default_registry


@click.group()
def schemas() -> None:
    """The Avro schemas of the base libraries (schemas/<library>/v<N>.avsc)."""


@schemas.command()
def check() -> None:
    """Check that every schema version reads data written by the previous one, and back, that
    no version changes a field's sharing class, authority or mask without a reviewed marker,
    and that the committed writer schemas (schemas/writers/) are what the registry loads."""
    try:
        registry = default_registry()
    except SchemaError as error:  # a version the registry refuses to load: each problem on a line
        for problem in str(error).splitlines():
            click.echo(problem)
        raise SystemExit(1) from None
    problems = check_all(registry) + writers.stale(registry)
    for problem in problems:
        click.echo(problem)
    if problems:
        raise SystemExit(1)
    versions = ", ".join(f"{library} v{'/v'.join(map(str, registry.versions(library)))}" for library in registry.libraries())
    click.echo(f"All schemas compatible: {versions}.")


@schemas.command("list")
def list_command() -> None:
    """Each library's versions with their fingerprints, and each field's sharing metadata."""
    registry = default_registry()
    for library in registry.libraries():
        for version in registry.versions(library):
            schema = registry.get(library, version)
            click.echo(f"{library} v{version}  fingerprint {schema.fingerprint.hex()}  key {schema.entity_key}")
        for policy in registry.latest(library).fields.values():
            click.echo(f"    {policy.name:<28} {policy.sharing:<13} {policy.authority:<20} {policy.sensitivity}")


@schemas.command("write")
def write_command() -> None:
    """Generate schemas/writers/: each version's full writer schema and the index by
    fingerprint and ce_dataschema, from the envelope and the version files (commit them)."""
    for name in writers.write(default_registry()):
        click.echo(f"wrote {writers.WRITERS_DIRECTORY / name}")
