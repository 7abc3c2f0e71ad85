"""Scenario 4 — the DLQ at scale: get / delete / page of 50 / filtered page of 50 at N entries of ~2 KB, as
ratios to a bare GET round trip measured in the same run, and the memory each entry costs (used_memory
delta, so indexes and stats included) against its JSON size. There is no bare-RQ DLQ to compare with:
the baseline is the server's own GET round trip. Filling, measuring and clean-up live in bench/dlq.py
(also runnable alone: python -m bench.dlq)."""

from __future__ import annotations

from .. import dlq as bench_dlq
from .common import Ctx, Scenario


def run(ctx: Ctx) -> Scenario:
    n = ctx.sizes.dlq_entries
    sc = Scenario("dlq", f"DLQ at {n:,} entries of ~{bench_dlq.ENTRY_BYTES:,} B", sizes={"entries": n})
    store = bench_dlq.make_store(ctx.conn, ctx.name("dlq"), n)
    try:
        result = bench_dlq.run(store, n, samples=ctx.sizes.dlq_samples, rounds=ctx.reps, log=not ctx.smoke)
    finally:
        bench_dlq.drop(store)
    sc.sizes["payload_bytes"] = round(result["payload_bytes"])
    sc.metrics["dlq"] = result
    rtt = result["get_rtt"]
    ms = 1000
    sc.row("GET round trip (baseline)", f"{rtt * ms:.3f} ms", "", "", "", "")
    for key, label in (("get", "get by id"), ("delete", "delete by id")):
        ratio = result[key] / rtt
        status = sc.goal(f"dlq: {label} ≤ 3× GET", ratio, 3.0, higher_is_better=False, unit="× GET")
        sc.row(label, f"{rtt * ms:.3f} ms", f"{result[key] * ms:.3f} ms", f"{ratio:.2f}× GET", "≤ 3× GET", status)
    for key, label, target in (("page", "page of 50", 5.0), ("filtered", "filtered page of 50 (kind)", 10.0)):
        value = result[key] * ms
        status = sc.goal(f"dlq: {label} ≤ {target:g} ms", value, target, higher_is_better=False, unit="ms")
        sc.row(
            label,
            "",
            f"{value:.2f} ms (p99 {result[key + '_p99'] * ms:.2f})",
            f"{result[key] / rtt:.1f}× GET",
            f"≤ {target:g} ms",
            status,
        )
    overhead = result["overhead_bytes"]
    status = sc.goal("dlq: memory ≤ payload + 600 B", overhead, 600.0, higher_is_better=False, unit="B")
    sc.row(
        "memory per entry",
        f"{result['payload_bytes']:,.0f} B JSON",
        f"{result['bytes_per_entry']:,.0f} B",
        f"+{overhead:,.0f} B",
        "≤ +600 B",
        status,
    )
    sc.notes.append(
        f"filled {n:,} entries in {result['fill_s']:.1f} s ({result['fill_per_s']:,.0f}/s, pipelined "
        f"DLQStore.add); latencies are medians of {ctx.sizes.dlq_samples} calls × {ctx.reps} rounds"
    )
    sc.notes.append(
        f"delete: {result['delete_server'] * 1e6:.0f} µs of it is the server's own time for the script "
        f"(INFO commandstats), against {result['get_rtt'] * 1e6:.0f} µs for a whole GET round trip"
    )
    if n < 100_000:
        sc.notes.append("memory per entry at small N is dominated by the server's fixed costs; trust it at ≥ 100k")
    return sc
