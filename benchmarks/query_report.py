"""The tables ``make bench-query`` prints: each system's figures, streamvec ÷ pgvector, the targets.

Every figure is measured in the run that prints it; nothing is quoted from elsewhere. Targets
are issue 10's: with recall@10 >= 0.95 at the default settings, streamvec answers at least
1.3 times pgvector's queries/s with 2 clients, and its p50 and p99 are below pgvector's, in
both deployments.
"""

from __future__ import annotations

import platform
from importlib.metadata import version

from benchmarks.partition_cost import CostRow, cheapest

QPS_FACTOR = 1.3
FIGURES = (  # column, width, how to read it from a system's figures, format
    ("queryable s", 11, lambda s: s["queryable_seconds"], "{:.1f}"),
    ("p50 ms", 7, lambda s: s["latency"]["p50_ms"], "{:.2f}"),
    ("p95 ms", 7, lambda s: s["latency"]["p95_ms"], "{:.2f}"),
    ("p99 ms", 7, lambda s: s["latency"]["p99_ms"], "{:.2f}"),
    ("q/s 2 cl.", 9, lambda s: s["throughput"]["qps"], "{:,.0f}"),
    ("RSS MB", 7, lambda s: s["memory"]["rss_mb"], "{:,.0f}"),
    ("PSS MB", 7, lambda s: s["memory"]["pss_mb"], "{:,.0f}"),
)


def print_report(f: dict) -> None:
    s = f["setup"]
    print(f"\nstreamvec bench-query: streamvec vs PostgreSQL + pgvector, same run, same vectors, same clients")
    print(f"command: python -m benchmarks.query {s['command']}".rstrip())
    print(f"machine: {s['cpus']} CPUs, {s['cpu']}, {s['isa']}; Python {platform.python_version()}, "
          f"hnswlib {version('hnswlib')}")
    print(f"HNSW M={s['m']}, ef_construction={s['ef_construction']} (both systems); streamvec: {s['partitions']} "
          f"partitions, default ef {s['ef_default']}; k={s['k']}; latency: 1 client, {s['requests']:,} requests; "
          f"queries/s: 2 client processes, {s['requests']:,} requests; each system at the lowest ef reaching "
          f"recall@10 ≥ {s['min_recall']}")
    for corpus in f["corpora"]:
        print_corpus(corpus, s)
    print_targets(f)
    times = f["stage_seconds"]
    print(f"\nwall time (1-minute load average at the end of the step, on {s['cpus']} CPUs): " + ", ".join(
        f"{name} {times[name]:.0f} s ({times[name + ': load average']:.1f})" for name in times
        if not name.endswith(": load average")))


def print_corpus(c: dict, s: dict) -> None:
    """One corpus: the systems, the ratios, how each was loaded and tuned, the layout cost."""
    pg = c["pgvector"]
    print(f"\n== {c['corpus']}: {c['n']:,} documents, {c['queries']:,} held-out queries; {c['source']}")
    head = f"{'system':<44} {'recall@10 default':>17} {'ef':>4} {'recall':>6} " + " ".join(
        f"{name:>{width}}" for name, width, _, _ in FIGURES)
    print(head)
    print("-" * len(head))
    for system in [pg, *c["streamvec"]]:
        reached = "" if system["ef_reached"] else "!"
        print(f"{system['label']:<44} {system['recall_default']:>9.3f} (ef {system['ef_default']:>3}) "
              f"{system['ef']:>3}{reached:1} "
              f"{system['recall']:>6.3f} " + " ".join(
                  f"{fmt.format(get(system)):>{width}}" for _, width, get, fmt in FIGURES))
    for system in c["streamvec"]:
        label = f"{system['label']} ÷ pgvector"
        print(f"{label:<44} {'':>17} {'':>4} {'':>6} " + " ".join(
            f"{get(system) / get(pg):>{width - 1}.2f}×" for _, width, get, _ in FIGURES))
    print(f"  pgvector: {pg['system']}; server up (initdb + start) in {pg['start_seconds']:.1f} s; COPY "
          f"{pg['load']['copy_seconds']:.1f} s + CREATE INDEX {pg['load']['index_seconds']:.1f} s; table "
          f"{pg['load']['table_mb']:,.0f} MB, indexes {pg['load']['indexes_mb']:,.0f} MB; settings "
          + ", ".join(f"{k}={v}" for k, v in pg["settings"].items()) + "; default hnsw.ef_search 40")
    for system in c["streamvec"]:
        print(f"  {system['system']}: producer acknowledged after {system['produce_seconds']:.1f} s, queryable "
              f"after {system['queryable_seconds']:.1f} s, standby copies caught up after "
              f"{system['standbys_seconds']:.1f} s; active partitions per worker: "
              + "; ".join(f"{url.rsplit(':', 1)[-1]}: {parts}" for url, parts in system["active_partitions"].items()))
    for system in [pg, *c["streamvec"]]:
        sweep = ", ".join(f"{ef}: {recall:.3f}" for ef, recall in sorted(system["sweep"].items(), key=lambda x: int(x[0])))
        print(f"  recall@10 by ef, {system['label']}: {sweep}; client CPU "
              f"{system['latency']['client_cpu']:.0%} (1 client), {system['throughput']['client_cpu']:.0%} (2 clients)"
              + (f"; FAILURES {system['latency']['failures']} {system['throughput']['failures']}"
                 if system["latency"]["failures"] or system["throughput"]["failures"] else ""))
    if "!" in "".join("" if x["ef_reached"] else "!" for x in [pg, *c["streamvec"]]):
        print("  ! no ef of the grid reached the recall target: measured at the largest")
    if c.get("partition_cost"):
        print_partition_cost([CostRow(**row) for row in c["partition_cost"]], s["min_recall"])


def print_partition_cost(cost: list[CostRow], min_recall: float) -> None:
    """Recall and one-thread queries/s of each index layout at each ef."""
    efs = list(dict.fromkeys(r.ef for r in cost))
    print("\n  index layout, one process, one thread, no HTTP (recall@10, queries/s):")
    print(f"  {'layout':<24} {'build s':>8} " + " ".join(f"{'ef ' + str(ef):>16}" for ef in efs))
    for layout in dict.fromkeys(r.layout for r in cost):
        rows = [r for r in cost if r.layout == layout]
        print(f"  {layout:<24} {rows[0].build_seconds:>8.1f} " + " ".join(
            f"{r.recall:>6.3f} {r.qps:>7,.0f}/s" for r in rows))
    print(f"  lowest ef with recall@10 ≥ {min_recall}: " + "; ".join(
        f"{layout} → " + (f"ef {c.ef}, {c.qps:,.0f} q/s" if (c := cheapest(cost, layout, min_recall)) else "none")
        for layout in dict.fromkeys(r.layout for r in cost)))


def print_targets(f: dict) -> None:
    """Issue 10's targets, each beside the figure it judges."""
    print(f"\ntargets (issue 10), streamvec against pgvector in this run:")
    for c in f["corpora"]:
        pg = c["pgvector"]
        for system in c["streamvec"]:
            who = f"{c['corpus']}, {system['label'].removeprefix('streamvec, ')}"
            lines = [
                (f"recall@10 ≥ {f['setup']['min_recall']} at the default ef", f"{system['recall_default']:.3f}",
                 system["recall_default"] >= f["setup"]["min_recall"]),
                (f"queries/s ≥ {QPS_FACTOR}× pgvector's", f"{system['throughput']['qps'] / pg['throughput']['qps']:.2f}×",
                 system["throughput"]["qps"] >= QPS_FACTOR * pg["throughput"]["qps"]),
                ("p50 below pgvector's", f"{system['latency']['p50_ms']:.2f} vs {pg['latency']['p50_ms']:.2f} ms",
                 system["latency"]["p50_ms"] < pg["latency"]["p50_ms"]),
                ("p99 below pgvector's", f"{system['latency']['p99_ms']:.2f} vs {pg['latency']['p99_ms']:.2f} ms",
                 system["latency"]["p99_ms"] < pg["latency"]["p99_ms"]),
            ]
            for what, value, ok in lines:
                print(f"  {who:<22} {what:<40} {value:>20}  {'met' if ok else 'NOT met'}")
