"""The table ``make bench-query`` prints: measured figures, the targets beside them, and context.

The targets are the issue's, for 100k documents at recall@10 >= 0.95. The reference rows are
figures published or measured elsewhere (quoted in the issue), not measured by this run.
"""

from __future__ import annotations

import platform
from importlib.metadata import version
from pathlib import Path

from benchmarks.partition_cost import CostRow, cheapest

MIN_RECALL = 0.95
TARGETS = {"p50_ms": 2.0, "p99_ms": 4.0, "qps": 1500.0, "load_seconds_per_100k": 60.0,
           "rss_mb_per_100k": 400.0, "fresh_text_p50": 0.150, "fresh_text_p99": 1.0}
REFERENCES = [  # system, load of 100k, recall@10, p50 ms, p99 ms, queries/s
    ("pgvector 0.8.6 (COPY + CREATE INDEX)", "154 s", "0.952", "2.72", "4.20", "1,077 (2 clients)"),
    ("raw hnswlib (in process)", "44 s", "0.953", "0.39", "0.71", "5,356"),
]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_report(f: dict) -> None:
    s = f["setup"]
    print(f"\nstreamvec bench-query: {s['n']:,} documents, {s['queries']:,} held-out queries, k={s['k']}, "
          f"{s['workers']} workers, {s['partitions']} partitions, real Kafka")
    print(f"data: {s['source']}")
    print(f"machine: {s['cpus']} CPUs, {s['cpu']}; Python {platform.python_version()}, hnswlib {version('hnswlib')}; "
          f"HNSW M={s['m']}, ef_construction={s['ef_construction']}, default ef={s['ef_default']}")
    load = f["load"]
    print(f"\nbulk load: {s['n']:,} BYO vectors queryable {load['seconds']:.1f} s after the first produce "
          f"({load['rate']:,.0f} vectors/s; producer acknowledged after {load['produce_seconds']:.1f} s)")

    print(f"\n{'query (POST /search)':<28} {'ef':>5} {'clients':>7} {'requests':>8} {'recall@10':>9} "
          f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'q/s':>7} {'client CPU':>10}")
    rows = [(r["query"], str(s["ef_default"]), r) for r in f["runs"]]
    rows += [("vector, ef sweep", str(r["ef"]), {**r, "clients": 1}) for r in f["ef_sweep"]]
    for name, ef, r in rows:
        recall = f"{r['recall']:.3f}" if "recall" in r else "-"
        print(f"{name:<28} {ef:>5} {r['clients']:>7} {r['requests']:>8} {recall:>9} {r['p50_ms']:>7.2f} "
              f"{r['p95_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['qps']:>7,.0f} {r['client_cpu']:>10.0%}")
        if r["failures"]:
            print(f"{'':<28} failures: {r['failures']}")

    print(f"\n{'worker':<10} {'RSS MB at start':>15} {'after load':>10} {'documents held':>15} "
          f"{'MB per 100k held':>17} {'growth per 100k':>16}")
    for m in f["memory"]:
        per_100k = m["documents"] / 100_000 or float("nan")
        print(f"{m['worker']:<10} {m['rss_mb_at_start']:>15.0f} {m['rss_mb']:>10.0f} {m['documents']:>15,} "
              f"{m['rss_mb'] / per_100k:>17.0f} {(m['rss_mb'] - m['rss_mb_at_start']) / per_100k:>16.0f}")

    text = f["text_ingest"]
    print(f"\ntext ingest, two workers: {text['rate']:,.0f} events/s " + (
        f"(measured: a backlog of {text['events']:,} text events)" if text["events"] else "(given: --max-text-rate)")
        + "; the freshness feeds run at half of it (text) and half the bulk-load rate (vectors)")
    print(f"{'freshness (event → searchable)':<31} {'events/s':>8} {'events':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'probe p50':>9} {'probe p99':>9} {'probes':>7}")
    for x in f["freshness"]:
        print(f"{x['kind'] + ' events (histogram)':<31} {x['rate']:>8.0f} {x['events']:>7} {_ms(x['metric_p50']):>7} "
              f"{_ms(x['metric_p99']):>7} {_ms(x['probe_p50']):>9} {_ms(x['probe_p99']):>9} "
              f"{x['probes_found']:>3}/{x['probes_sent']:<3}")
    for x in f["freshness"]:
        for name, (lower, upper) in x["metric_buckets"].items():
            if lower > 0 and upper / lower > 2:
                print(f"  {x['kind']} {name} lies in the histogram's ({lower:g} s, {upper:g} s] bucket: the interpolated "
                      "figure is coarse there; the probe columns measure it directly")
    if any(x["metric_p50"] is None for x in f["freshness"]):
        print("  (p50/p99 '-': the workers do not export streamvec_searchable_latency_seconds; the probe columns "
              "poll POST /search until the event is found)")

    cost = [CostRow(**row) for row in f["partition_cost"]]
    print("\npartition cost, one process, one thread, partitions searched one after another and merged:")
    print(f"{'partitions':>10} {'build s':>8} " + " ".join(f"{'ef ' + str(r.ef):>15}" for r in cost
                                                         if r.partitions == cost[0].partitions))
    for p in dict.fromkeys(r.partitions for r in cost):
        cells = [f"{r.recall:.3f} {r.qps:>7,.0f}/s" for r in cost if r.partitions == p]
        build = next(r.build_seconds for r in cost if r.partitions == p)
        print(f"{p:>10} {build:>8.1f} " + " ".join(f"{c:>15}" for c in cells))
    print(f"  lowest ef with recall@10 ≥ {MIN_RECALL}: " + "; ".join(
        f"{p} → " + (f"ef {c.ef}, {c.qps:,.0f} q/s" if (c := cheapest(cost, p, MIN_RECALL)) else "none")
        for p in dict.fromkeys(r.partitions for r in cost)))

    print_targets(f)
    times = f["stage_seconds"]
    print(f"\nwall time (1-minute load average at the end of the step, on {f['setup']['cpus']} CPUs): " + ", ".join(
        f"{name} {times[name]:.0f} s ({times[name + ': load average']:.1f})" for name in times
        if not name.endswith(": load average")))
    print("\npublished / measured elsewhere (from the issue; not this run, not this machine necessarily):")
    print(f"{'system':<38} {'load 100k':>9} {'recall@10':>9} {'p50 ms':>7} {'p99 ms':>7} {'q/s':>18}")
    for name, loaded, recall, p50, p99, qps in REFERENCES:
        print(f"{name:<38} {loaded:>9} {recall:>9} {p50:>7} {p99:>7} {qps:>18}")


def print_targets(f: dict) -> None:
    """Each target beside the figure it judges."""
    one = f["runs"][0]
    best_qps = max(r["qps"] for r in f["runs"] if r["query"] == "vector, default ef")
    best_batch = max((r["qps"] for r in f["runs"] if "batch" in r["query"]), default=float("nan"))
    per_100k = f["load"]["seconds"] * 100_000 / f["setup"]["n"]
    rss = max(m["rss_mb"] / (m["documents"] / 100_000) for m in f["memory"] if m["documents"])
    text = next(x for x in f["freshness"] if x["kind"] == "text")
    source = "histogram" if text["metric_p50"] is not None else "probe"
    p50, p99 = (text["metric_p50"], text["metric_p99"]) if source == "histogram" else (text["probe_p50"],
                                                                                         text["probe_p99"])
    lines = [
        (f"recall@10 ≥ {MIN_RECALL} at the default ef", f"{one['recall']:.3f}", one["recall"] >= MIN_RECALL),
        (f"p50 ≤ {TARGETS['p50_ms']:.0f} ms (1 client)", f"{one['p50_ms']:.2f} ms", one["p50_ms"] <= TARGETS["p50_ms"]),
        (f"p99 ≤ {TARGETS['p99_ms']:.0f} ms (1 client)", f"{one['p99_ms']:.2f} ms", one["p99_ms"] <= TARGETS["p99_ms"]),
        (f"≥ {TARGETS['qps']:,.0f} queries/s (POST /search, best of 1/2/8 clients)", f"{best_qps:,.0f}",
         best_qps >= TARGETS["qps"]),
        (f"≥ {TARGETS['qps']:,.0f} queries/s (POST /search/batch, best of 2/8 clients)", f"{best_batch:,.0f}",
         best_batch >= TARGETS["qps"]),
        (f"100k BYO vectors queryable ≤ {TARGETS['load_seconds_per_100k']:.0f} s", f"{per_100k:.1f} s per 100k",
         per_100k <= TARGETS["load_seconds_per_100k"]),
        (f"worker RSS ≤ {TARGETS['rss_mb_per_100k']:.0f} MB per 100k held (worst worker)", f"{rss:.0f} MB",
         rss <= TARGETS["rss_mb_per_100k"]),
        (f"freshness, text, p50 ≤ {TARGETS['fresh_text_p50'] * 1000:.0f} ms ({source})", f"{_ms(p50)} ms",
         p50 is not None and p50 <= TARGETS["fresh_text_p50"]),
        (f"freshness, text, p99 ≤ {TARGETS['fresh_text_p99'] * 1000:.0f} ms ({source})", f"{_ms(p99)} ms",
         p99 is not None and p99 <= TARGETS["fresh_text_p99"]),
    ]
    print("\ntargets (100k documents, recall@10 ≥ 0.95):")
    for what, value, ok in lines:
        print(f"  {what:<58} {value:>16}  {_verdict(ok)}")
