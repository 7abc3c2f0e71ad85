"""genqueue limits — provider limit keys: show them, set or clear their limits live."""

from __future__ import annotations

import click

from ..limits.rules import MAX_CONCURRENCY, MAX_RATE_N
from .app import get_app
from .params import json_option
from .render import emit_json, table


@click.group(
    invoke_without_command=True,
    help="Limit keys (e.g. simulated:sim-image-1, openai:gpt-image-1): state, in flight/cap, rate, parked "
    "jobs, throttle and pause counters. Settings live in Redis: a change reaches every worker at "
    "once.\n\n\b\nExamples:\n  genqueue limits\n  genqueue limits set openai:gpt-image-1 "
    "--concurrency 4 --rate 5/s\n  genqueue limits rm openai:gpt-image-1",
)
@click.option("--key", default=None, help="Only this key.")
@json_option
@click.pass_context
def limits(ctx: click.Context, key: str | None, as_json: bool) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from ..limits.store import describe

    app = get_app(None, as_json)
    rows = describe(app.connection, key)
    if as_json:
        emit_json({"limits": rows})
        return
    if not rows:
        click.echo("no limit keys yet (a key appears when a job of it first runs, or with `genqueue limits set`)")
        return
    click.echo(
        table(
            [
                *("key", "state", "in flight/cap", "rate", "units", "parked"),
                *("429s (1 min)", "throttled", "paused", "opened"),
            ],
            [
                [
                    r["key"],
                    r["state"] + (f" {r['paused_for_s']}s" if r["paused_for_s"] else ""),
                    f"{r['in_flight']}/{r['concurrency'] or '-'}",
                    (r["rate"] or "-") + (" (learned)" if r["rate_learned"] else ""),
                    units_text(r.get("units") or {}),
                    r["parked"],
                    r["rate_limited_1m"],
                    r["counters"].get("throttled", 0),
                    r["counters"].get("paused", 0),
                    r["counters"].get("breaker_opens", 0),
                ]
                for r in rows
            ],
        )
    )


def units_text(units: dict) -> str:
    """`tokens 1200+300/90k/m`: per unit, settled in the window + reserved by running jobs / the limit."""
    return ", ".join(f"{unit} {u['used']:g}+{u['reserved']:g}/{u['limit']}" for unit, u in units.items()) or "-"


@limits.command(
    "set",
    help="Set a key's concurrency cap, rate, unit limits (tokens, images, usd per window) and/or breaker "
    "cooldown for every worker (overrides a task's declared limits).\n\n\b\nExamples:\n  genqueue limits "
    "set lab --concurrency 3 --rate 5/s\n  genqueue limits set openai:gpt-4o --tokens 90k/m\n  genqueue limits "
    "set openai:gpt-image-1 --images 50/m --usd 200/d\n  genqueue limits set lab --cooldown 1m",
)
@click.argument("key")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=MAX_CONCURRENCY),
    default=None,
    help=f"Jobs of this key in flight at most (1 to {MAX_CONCURRENCY}).",
)
@click.option(
    "--rate",
    default=None,
    metavar="N/PERIOD",
    help=f"Calls per period, e.g. 5/s, 300/m, 10/2s (1 to {MAX_RATE_N} calls, a period of 1 ms to 24h).",
)
@click.option(
    "--cooldown",
    default=None,
    metavar="DURATION",
    help="How long the breaker keeps the key open after a 5xx/timeout storm, e.g. 30s, 2m (0: no breaker; at most 1h).",
)
@click.option("--tokens", default=None, metavar="N/WINDOW", help="Tokens per window, e.g. 90k/m, 2M/h (k, M; s m h d).")
@click.option("--images", default=None, metavar="N/WINDOW", help="Images per window, e.g. 50/m.")
@click.option("--usd", default=None, metavar="X/WINDOW", help="Dollars per window, e.g. 200/d, 0.5/m.")
@json_option
def set_(
    key: str,
    concurrency: int | None,
    rate: str | None,
    cooldown: str | None,
    tokens: str | None,
    images: str | None,
    usd: str | None,
    as_json: bool,
) -> None:
    from ..errors import InvalidInput
    from ..limits.rules import Limits, check_key
    from ..limits.store import describe, set_limits

    check_key(key)
    units = {u: v for u, v in (("tokens", tokens), ("images", images), ("usd", usd)) if v is not None}
    parsed = Limits.parse({"rate": rate, "cooldown": cooldown, **units})
    if concurrency is None and rate is None and cooldown is None and not units:
        raise InvalidInput("give --concurrency, --rate, --tokens, --images, --usd and/or --cooldown")
    app = get_app(None, as_json)
    set_limits(app.connection, key, concurrency=concurrency, rate=rate, cooldown_s=parsed.cooldown_s, units=units)
    row = describe(app.connection, key)[0]
    if as_json:
        emit_json(row)
    else:
        click.echo(
            f"{key}: concurrency {row['concurrency'] or '-'}, rate {row['rate'] or '-'}, "
            + "".join(f"{unit} {u['limit']}, " for unit, u in row["units"].items())
            + f"breaker cooldown {row['cooldown_s']:g}s"
            + (" (breaker off)" if row["cooldown_s"] == 0 else "")
        )


@limits.command(
    "rm",
    help="Remove a key: its overrides (its task's declared limits, or none, apply again), its pause, its "
    "breakers, its learned rate and counters. A key with jobs in flight or parked stays known (they finish "
    "or wake as usual) and the command says so.\n\n\b\nExample:\n  genqueue limits rm lab",
)
@click.argument("key")
@json_option
def rm(key: str, as_json: bool) -> None:
    from ..backend import audit
    from ..errors import NotFound
    from ..limits.rules import check_key
    from ..limits.store import clear

    check_key(key)
    app = get_app(None, as_json)
    done = clear(app.connection, key)
    if not done["known"] and not done["overrides"] and not done["paused_for_s"] and not done["breaker"]:
        raise NotFound(f"no limit key {key}")
    audit.record(app.connection, "limits.rm", "", filters={"key": key}, counts=_counts(done))
    if as_json:
        emit_json(done)
        return
    removed = ["overrides" if done["overrides"] else "", _what_ended(done)]
    line = f"{key}: removed" + "".join(f", {x}" for x in removed if x)
    if not done["forgotten"]:
        line += f"; kept while {done['in_flight']} in flight and {done['parked']} parked (parked jobs are woken)"
    click.echo(line)


@limits.command(
    "resume",
    help="End a key's pause (a 429's Retry-After, spent limit headers, pause_key) and its open breaker "
    "(the key's and its tenants') now; its parked jobs wake at once. Audited.\n\n\b\nExample:\n"
    "  genqueue limits resume openai:gpt-image-1",
)
@click.argument("key")
@json_option
def resume_(key: str, as_json: bool) -> None:
    from ..backend import audit
    from ..limits.rules import check_key
    from ..limits.store import resume

    check_key(key)
    app = get_app(None, as_json)
    done = resume(app.connection, key)
    audit.record(app.connection, "limits.resume", "", filters={"key": key}, counts=_counts(done))
    if as_json:
        emit_json(done)
    else:
        click.echo(f"{key}: " + (_what_ended(done) or "was neither paused nor open; its parked jobs are woken"))


def _what_ended(done: dict) -> str:
    parts = []
    if done.get("paused_for_s"):
        parts.append(f"pause ended ({done['paused_for_s']:g}s were left)")
    if done.get("breaker"):
        parts.append(f"breaker closed (was {done['breaker']})")
    if done.get("tenant_breakers"):
        parts.append(f"{done['tenant_breakers']} tenant breaker(s) closed")
    return ", ".join(parts)


def _counts(done: dict) -> dict:
    return {k: v for k, v in done.items() if k != "key" and v not in (None, False, 0)}
