"""The `portal` operator command (design.md "Operator CLI").

Every command that creates something accepts --json and then prints one JSON object
on stdout; errors go to stderr with a non-zero exit.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine

from portal import audit
from portal.config import Settings, load_settings
from portal.errors import PortalError

OPERATOR = "cli:" + (os.environ.get("SUDO_USER") or os.environ.get("USER") or "operator")


class Context:
    def __init__(self, as_json: bool) -> None:
        self.settings: Settings = load_settings()
        self.as_json = as_json
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """The owner connection: operators administer the database."""
        if self._engine is None:
            from portal.db import make_engine

            self._engine = make_engine(self.settings.database_url)
        return self._engine

    def out(self, obj: dict[str, Any], text: str) -> None:
        click.echo(json.dumps(obj, ensure_ascii=False) if self.as_json else text)


def command(group: click.Group, name: str | None = None) -> Callable[..., Any]:
    """A subcommand with --json, turning domain errors into a clean stderr line and exit 1."""

    def decorate(fn: Callable[..., Any]) -> Any:
        @group.command(name)
        @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
        @wraps(fn)
        def run(as_json: bool, **kw: Any) -> None:
            try:
                fn(Context(as_json), **kw)
            except PortalError as err:
                field = f" [{err.field}]" if err.field else ""
                click.echo(f"error{field}: {err}", err=True)
                sys.exit(1)
            except FileNotFoundError as err:
                click.echo(f"error: {err}", err=True)
                sys.exit(1)

        return run

    return decorate


CSV_ENCODINGS = ("utf-8-sig", "gb18030")  # Excel in China saves CSV as GBK (a GB18030 subset)
MAX_CSV_BYTES = 64 * 1024 * 1024  # about 350,000 return-visit rows; split larger files
_GB = {"gbk", "gb2312", "gb18030", "cp936", "936", "euc_cn", "euccn"}


def read_csv_file(file: Path, encoding: str | None = None) -> str:
    """The text of a CSV file: UTF-8 (with or without BOM), else GB18030/GBK, or the
    encoding the operator names. Refused whole (before reading) above MAX_CSV_BYTES."""
    size = file.stat().st_size
    if size > MAX_CSV_BYTES:
        raise click.ClickException(
            f"{file} is {size / 2**20:.1f} MiB, more than the {MAX_CSV_BYTES // 2**20} MiB "
            "an import takes: split it"
        )
    raw = file.read_bytes()
    if not raw.strip():
        raise click.ClickException(f"{file} is empty: expected a header line and rows")
    for name in (encoding,) if encoding else CSV_ENCODINGS:
        try:
            text = raw.decode(name)
        except LookupError:
            msg = f"unknown encoding {name!r}"
            raise click.BadParameter(msg, param_hint="--encoding") from None
        except UnicodeDecodeError as err:
            if encoding:
                line = raw[: err.start].count(b"\n") + 1
                raise click.ClickException(f"{file} line {line} is not {encoding} text") from None
            continue
        if name.lower().replace("-", "_") in _GB and not raw.isascii() and _is_utf8(raw):
            # UTF-8 bytes read as GBK give plausible Chinese gibberish, not an error.
            raise click.ClickException(
                f"{file} is UTF-8 text, not {encoding}: drop --encoding (read as {encoding} "
                "it would be stored as gibberish)"
            )
        return text
    raise click.ClickException(f"{file} is neither UTF-8 nor GB18030/GBK text: save it as UTF-8")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@click.group()
def main() -> None:
    """Gongping (公评) portal operator command."""


@command(main, "init")
def init(ctx: Context) -> None:
    """Create or migrate the database and the ledger signing key."""
    from portal.db import migrate
    from portal.ledger import load_key
    from portal.secrets_files import ensure_key_file

    migrate(ctx.settings)
    key = load_key(ctx.settings.ledger_key_path, ctx.settings.ledger_origin, create=True)
    ensure_key_file(ctx.settings.phone_key_path)
    ctx.out(
        {"database": ctx.engine.url.render_as_string(hide_password=True), "key_id": key.key_id},
        f"database ready: {ctx.engine.url.render_as_string(hide_password=True)}\n"
        f"ledger key: {ctx.settings.ledger_key_path} (key id {key.key_id})",
    )


@command(main, "demo")
@click.option(
    "--ratings", "n", type=click.IntRange(0, 5_000_000), default=20_000, show_default=True
)
@click.option("--seed", type=int, default=20261122, show_default=True)
def demo(ctx: Context, n: int, seed: int) -> None:
    """Load fictional demo insurers, branches, staff, users and ratings (through record())."""
    from portal import demo as demo_loader

    result = demo_loader.load(ctx.engine, ctx.settings, n=n, seed=seed, progress=not ctx.as_json)
    ctx.out(result, demo_loader.summary(result))


@command(main, "serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
def serve(ctx: Context, host: str, port: int, workers: int) -> None:
    """Run the web app with uvicorn."""
    import uvicorn

    click.echo(f"Gongping portal: http://{host}:{port}/", err=True)
    uvicorn.run(
        "app:app",
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        forwarded_allow_ips=ctx.settings.forwarded_allow_ips,
        loop="uvloop" if workers > 1 else "asyncio",
        log_level="info",
    )


@main.group()
def insurer() -> None:
    """Insurers."""


@command(insurer, "add")
@click.argument("code")
@click.argument("name")
@click.option("--policy-format", default=None, help=r"policy numbers as a regex, e.g. 'HX\d{12}'")
def insurer_add(ctx: Context, code: str, name: str, policy_format: str | None) -> None:
    """Add an insurer, e.g. `portal insurer add HX 华兴示范财险`."""
    from portal import directory

    with ctx.engine.begin() as conn:
        iid = directory.add_insurer(conn, code, name, policy_format)
        audit.log(conn, OPERATOR, "insurer.add", code.upper(), name=name, format=policy_format)
    ctx.out(
        {"id": iid, "code": code.upper(), "name": name, "policy_format": policy_format},
        f"insurer {code.upper()} added",
    )


@command(insurer, "policy-format")
@click.argument("code")
@click.argument("regex", required=False)
def insurer_policy_format(ctx: Context, code: str, regex: str | None) -> None:
    """Set (or, without REGEX, clear) the policy-number format masked in published texts."""
    from portal import directory

    with ctx.engine.begin() as conn:
        directory.set_policy_format(conn, code, regex)
        audit.log(conn, OPERATOR, "insurer.policy_format", code.upper(), format=regex)
    shown = regex or "none"
    ctx.out(
        {"code": code.upper(), "policy_format": regex},
        f"insurer {code.upper()}: policy-number format {shown}",
    )


@main.group()
def branch() -> None:
    """Branches (any outlet or office of an insurer)."""


@command(branch, "add")
@click.argument("insurer_code", metavar="INSURER")
@click.argument("code", metavar="BRANCH")
@click.argument("name")
@click.argument("region")
def branch_add(ctx: Context, insurer_code: str, code: str, name: str, region: str) -> None:
    """Add a branch; REGION is a GB/T 2260 code such as 430200."""
    from portal import directory

    with ctx.engine.begin() as conn:
        bid = directory.add_branch(conn, insurer_code.upper(), code, name, region)
        audit.log(conn, OPERATOR, "branch.add", code, insurer=insurer_code.upper(), region=region)
    ctx.out(
        {"id": bid, "insurer": insurer_code.upper(), "branch": code, "region": region},
        f"branch {code} added",
    )


@main.group()
def staff() -> None:
    """Staff (tellers, agents, call agents, adjusters)."""


@command(staff, "import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def staff_import(ctx: Context, file: Path) -> None:
    """Import FILE.csv with columns insurer,branch,staff_no,name,role[,phone] (all or
    nothing; a staff member's own mobile is kept only as a keyed hash)."""
    from portal import directory
    from portal.secrets_files import ensure_key_file

    data = read_csv_file(file)
    rows = directory.parse_staff_csv(data)
    with ctx.engine.begin() as conn:
        key = ensure_key_file(ctx.settings.phone_key_path) if any(r.phone for r in rows) else None
        added, updated = directory.import_staff(conn, rows, key)
        audit.log(conn, OPERATOR, "staff.import", file.name, added=added, updated=updated)
    ctx.out({"added": added, "updated": updated}, f"staff: {added} added, {updated} updated")


@main.group()
def policies() -> None:
    """Policies, so that web reviewers can prove they are customers."""


@command(policies, "import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def policies_import(ctx: Context, file: Path) -> None:
    """Import FILE.csv with columns insurer,policy_no,phone (phones stored only hashed).

    Good rows are imported; each bad row is listed with its line number on stderr (and
    under "errors" with --json), and the exit status is then 1.
    """
    from portal import policies as registry
    from portal.secrets_files import ensure_key_file

    if not ctx.settings.phone_key_path.exists():  # a new key would hash to nothing we know
        raise FileNotFoundError(f"phone key {ctx.settings.phone_key_path} is missing: run init")
    data = read_csv_file(file)
    with ctx.engine.begin() as conn:
        report = registry.import_csv(conn, data, ensure_key_file(ctx.settings.phone_key_path))
        counts = {k: v for k, v in report.as_json().items() if k != "errors"}
        audit.log(
            conn, OPERATOR, "policies.import", file.name, **counts, rejected=len(report.errors)
        )
    ctx.out(
        report.as_json(),
        f"policies: {report.added} added, {report.updated} updated, "
        f"{report.unchanged} unchanged, {len(report.errors)} rejected",
    )
    for error in report.errors:
        click.echo(str(error), err=True)
    if report.errors:
        sys.exit(1)


@main.group("policies-in-force")
def policies_in_force() -> None:
    """Policies in force per insurer and month (the rankings' per-10,000 figures)."""


@command(policies_in_force, "import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def policies_in_force_import(ctx: Context, file: Path) -> None:
    """Import FILE.csv with columns insurer,month,policies (month as YYYY-MM).

    All rows must be valid or nothing is stored; a month reported again is replaced.
    """
    from portal import policies_in_force as pif

    reports = pif.parse_csv(read_csv_file(file))
    with ctx.engine.begin() as conn:
        counts = pif.apply(conn, reports, "cli")
        audit.log(conn, OPERATOR, "policies_in_force.import", file.name, **counts)
    ctx.out(counts, f"policies in force: {counts['months']} insurer-months stored")


@main.group()
def device() -> None:
    """Counter evaluator devices."""


@command(device, "add")
@click.argument("insurer_code", metavar="INSURER")
@click.argument("branch_code", metavar="BRANCH")
@click.option("--label", default=None, help="Where it stands, e.g. 3号窗口.")
def device_add(ctx: Context, insurer_code: str, branch_code: str, label: str | None) -> None:
    """Register a device for a branch; prints its token once."""
    from portal import credentials

    with ctx.engine.begin() as conn:
        device_id, token = credentials.add_device(conn, insurer_code.upper(), branch_code, label)
        audit.log(conn, OPERATOR, "device.add", f"device:{device_id}", branch=branch_code)
    ctx.out(
        {"device_id": device_id, "token": token}, f"device {device_id}\ntoken (shown once): {token}"
    )


@main.group()
def client() -> None:
    """Call-centre API clients."""


@command(client, "add")
@click.argument("insurer_code", metavar="INSURER")
def client_add(ctx: Context, insurer_code: str) -> None:
    """Register a phone system for an insurer; prints its secret once."""
    from portal import credentials

    with ctx.engine.begin() as conn:
        client_id, secret = credentials.add_client(conn, insurer_code.upper())
        audit.log(conn, OPERATOR, "client.add", client_id, insurer=insurer_code.upper())
    ctx.out(
        {"client_id": client_id, "secret": secret},
        f"client {client_id}\nsecret (shown once): {secret}",
    )


@command(client, "rotate")
@click.argument("client_id")
def client_rotate(ctx: Context, client_id: str) -> None:
    """Give a client a new secret (printed once); the old one stops working at once."""
    from portal import credentials

    with ctx.engine.begin() as conn:
        secret = credentials.rotate_client(conn, client_id)
        audit.log(conn, OPERATOR, "client.rotate", client_id)
    ctx.out(
        {"client_id": client_id, "secret": secret},
        f"client {client_id}\nnew secret (shown once): {secret}",
    )


@command(client, "revoke")
@click.argument("client_id")
def client_revoke(ctx: Context, client_id: str) -> None:
    """Refuse a client's requests from now on (its ratings stay)."""
    from portal import credentials

    with ctx.engine.begin() as conn:
        credentials.revoke_client(conn, client_id)
        audit.log(conn, OPERATOR, "client.revoke", client_id)
    ctx.out({"client_id": client_id, "revoked": True}, f"client {client_id} revoked")


@main.group()
def visits() -> None:
    """Return-visit campaigns (回访)."""


@command(visits, "import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--encoding", default=None, help="Default: UTF-8, else GB18030/GBK.")
def visits_import(ctx: Context, file: Path, encoding: str | None) -> None:
    """Import FILE.csv: insurer,kind,policy_no,phone,staff_no,date,customer.

    kind is new_policy (date: issued) or claim (date: closed). Good rows are imported in
    one transaction; each bad row is listed with its line number on stderr (and under
    "errors" with --json), and the exit status is then 1.
    """
    from portal import visits as campaigns
    from portal.db import reading
    from portal.secrets_files import ensure_key_file
    from portal.stars import china_today

    if not ctx.settings.phone_key_path.exists():  # a new key would hash to nothing we know
        raise FileNotFoundError(f"phone key {ctx.settings.phone_key_path} is missing: run init")
    data = read_csv_file(file, encoding)
    key = ensure_key_file(ctx.settings.phone_key_path)
    today = china_today()
    lines = max(data.count("\n") - 1, 1)
    out = None if not ctx.as_json else click.open_file(os.devnull, "w")
    # Check every row on a read connection first (on SQLite parsing and hashing 100k rows
    # took 17 s under the write lock), then take the write transaction only to apply.
    with (
        click.progressbar(length=lines, label="visits", file=out or sys.stderr) as bar,
        reading(ctx.engine) as conn,
    ):
        rows, report = campaigns.check_csv(conn, data, key, today, progress=bar.update)
    with ctx.engine.begin() as conn:
        campaigns.apply(conn, rows, today, report)
        counts = {k: v for k, v in report.as_json().items() if k != "errors"}
        audit.log(conn, OPERATOR, "visits.import", file.name, **counts, rejected=len(report.errors))
    ctx.out(
        report.as_json(),
        f"visits: {report.added} added, {report.updated} updated, {report.reopened} reopened, "
        f"{report.unchanged} unchanged, {len(report.errors)} rejected",
    )
    for error in report.errors:
        click.echo(str(error), err=True)
    if report.errors:
        sys.exit(1)


@main.group()
def user() -> None:
    """Portal users."""


@command(user, "add")
@click.argument("username")
@click.option("--role", type=click.Choice(["regulator", "insurer", "admin"]), required=True)
@click.option("--insurer", "insurer_code", default=None, help="Insurer code (role insurer).")
def user_add(ctx: Context, username: str, role: str, insurer_code: str | None) -> None:
    """Add a user; the password is read from stdin (one line)."""
    from portal import accounts

    password = sys.stdin.readline().rstrip("\n")
    with ctx.engine.begin() as conn:
        uid = accounts.add_user(
            conn, username, password, role, insurer_code.upper() if insurer_code else None
        )
        audit.log(conn, OPERATOR, "user.add", username, role=role, insurer=insurer_code)
    ctx.out({"id": uid, "username": username, "role": role}, f"user {username} added")


@command(main, "checkpoint")
def checkpoint_cmd(ctx: Context) -> None:
    """Sequence pending ratings into the ledger and sign a checkpoint."""
    from portal import ledger
    from portal.db import make_engine

    key = ledger.load_key(ctx.settings.ledger_key_path, ctx.settings.ledger_origin)
    engine = make_engine(ctx.settings.runtime_database_url)
    cp = ledger.checkpoint(engine, key)
    if cp is None:
        with engine.connect() as conn:
            cp = ledger.latest(conn)
    body = ledger.checkpoint_json(cp, key.origin) if cp else {"tree_size": 0}
    ctx.out(body, f"checkpoint: tree size {body['tree_size']}, root {body.get('root_hash', '-')}")


@command(main, "verify")
def verify_cmd(ctx: Context) -> None:
    """Recompute every leaf, root and signature; exit 1 naming each rating that changed."""
    from portal import ledger

    key = ledger.load_key(ctx.settings.ledger_key_path, ctx.settings.ledger_origin)
    problems = ledger.verify(ctx.engine, key.private.public_key(), key.origin)
    ctx.out(
        {
            "ok": not problems,
            "problems": [str(p) for p in problems],
            "ratings": sorted({p.rating_id for p in problems if p.rating_id}),
        },
        "\n".join(str(p) for p in problems)
        or "ledger verified: every leaf, root and signature matches",
    )
    if problems:
        sys.exit(1)


@command(main, "reindex")
def reindex_cmd(ctx: Context) -> None:
    """Rebuild the search index from the database."""
    from portal import search

    index = search.make_index(ctx.settings, ctx.engine)
    count = search.reindex(ctx.engine, index, progress=not ctx.as_json)
    ctx.out({"indexed": count, "backend": index.name}, f"indexed {count} reviews in {index.name}")


@main.group()
def rankings() -> None:
    """Published rankings (docs/rankings.md)."""


@command(rankings, "rederive")
@click.argument("snapshot_id", type=int)
def rankings_rederive(ctx: Context, snapshot_id: int) -> None:
    """Recompute a published ranking from the ledger's first TREE_SIZE leaves; exit 1
    naming every figure that differs from the snapshot."""
    from portal import ranking_audit

    with ctx.engine.connect() as conn:
        problems = ranking_audit.rederive(conn, snapshot_id)
    ctx.out(
        {"snapshot": snapshot_id, "mismatches": [str(p) for p in problems]},
        "\n".join(str(p) for p in problems)
        or f"ranking {snapshot_id} re-derived from the ledger: every figure matches",
    )
    if problems:
        sys.exit(1)


@main.group()
def rollups() -> None:
    """Rollups that rankings read."""


@command(rollups, "rebuild")
def rollups_rebuild(ctx: Context) -> None:
    """Recompute all rollups from the ratings."""
    from portal import rollups as r
    from portal.ratings import day_of

    with ctx.engine.begin() as conn:
        n = r.rebuild(conn, day_of)
    ctx.out({"ratings": n}, f"rollups rebuilt from {n} ratings")


if __name__ == "__main__":
    main()
