"""``fleet roster``: import a county's roster spreadsheet (CSV) and show a site's roster.

Works on the fleet's database directly (the data directory's SQLite file, or
``--database``/``HAZARDWATCH_DATABASE``), with the service stopped or running. A file with a
bad row is refused whole, naming the line and the field; nothing of it is stored. Contact
details are printed masked unless asked for, and are never logged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from fleet.cli_options import DEFAULT_DATA_DIR, Database, DataDir, checked_database
from fleet.roster import RosterError, mask_email, mask_webhook, parse_roster_csv
from fleet.service import open_repository
from fleet.settings import FleetSettings
from fleet.signing import SigningKey
from fleet.village_config_refresh import refresh_if_village_changed, village_tier
from protocol.contacts import mask_phone

roster_app = typer.Typer(
    help="The responsible persons (责任人) of each site, by tier.", no_args_is_help=True
)


@roster_app.command("import")
def roster_import(
    file: Annotated[Path, typer.Argument(help="CSV: site_id,tier,name,role,mobile,email,webhook")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database: Database = None,
) -> None:
    """Replace the roster of every site named in FILE (sites not in it are left alone).

    A site whose village tier changed has its gateways' configs sent again, re-signed with
    the new numbers (those that text the village themselves, ``[village_call]``); a running
    fleet delivers them within seconds.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"{file}: cannot read it as UTF-8 text: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        by_site = parse_roster_csv(text)
    except RosterError as exc:
        typer.echo(f"{file}: {exc}; nothing was imported", err=True)
        raise typer.Exit(2) from exc
    settings = FleetSettings(data_dir=data_dir, database=checked_database(database, reachable=True))
    repository = open_repository(settings)
    try:
        now = time.time()
        for site_id, persons in by_site.items():
            before = village_tier(repository.roster(site_id))
            repository.escalation.replace_roster(site_id, persons, now)
            typer.echo(f"{site_id}: {len(persons)} person(s)")
            outcome = refresh_if_village_changed(
                repository,
                site_id,
                before,
                lambda: SigningKey.load_or_create(settings.data_dir),
                now,
                "fleet roster import",
            )
            if outcome is None:
                continue
            for gateway_id, config_id in outcome.sent:
                typer.echo(f"  {gateway_id}: config {config_id} sent with the new village tier")
            for gateway_id, why in outcome.not_sent:
                typer.echo(f"  {gateway_id}: keeps its old village list: {why}", err=True)
    finally:
        repository.close()


@roster_app.command("show")
def roster_show(
    site_id: Annotated[str, typer.Argument(help="The site, e.g. creek-village.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database: Database = None,
    unmasked: Annotated[
        bool, typer.Option("--unmasked", help="Print phone numbers and e-mail in clear.")
    ] = False,
) -> None:
    """A site's persons by tier: id, tier, name, role, mobile, e-mail, webhook (masked)."""
    url = checked_database(database, reachable=True)
    repository = open_repository(FleetSettings(data_dir=data_dir, database=url))
    try:
        persons = repository.escalation.roster(site_id)
    finally:
        repository.close()
    if not persons:
        typer.echo(f"site {site_id!r} has nobody on its roster", err=True)
        raise typer.Exit(1)
    for p in persons:
        mobile = p.mobile if unmasked else mask_phone(p.mobile)
        email = p.email if unmasked else mask_email(p.email)
        webhook = p.webhook if unmasked else mask_webhook(p.webhook)
        cells = (p.id, p.tier.value, p.name, p.role, mobile or "-", email or "-", webhook or "-")
        typer.echo("\t".join(str(c) for c in cells))
