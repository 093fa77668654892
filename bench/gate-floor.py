#!/usr/bin/env python3
"""The gate's evidence floor: the statements a plan's health section asks for, as psql scripts.

    bench/gate-floor.py PLAN OUTDIR BASELINE_WRITES WINDOW_WRITES

Writes OUTDIR/baseline.sql, OUTDIR/post.sql and OUTDIR/soak.sql: for one trust, the fewest
executions of the plan's own statements that a gated rollout of it makes per window, with
nothing of flotilla's around them (no control queries, no second looks or confirmations, no
journal, one session):

  baseline      every latency probe `samples` times, the write probe's writes (each read
                back, then all removed in one transaction), every integrity table read in
                full, every invariant;
  post          every latency probe MIN_EARLY_PASS times (the fewest a window judged against
                its baseline takes, src/health/sequential), the writes, integrity, invariants;
  soak          the same without integrity (soak windows do not hash it).

The write counts are flotilla's sizing of the plan (bench/run reads them from `flotilla
validate`: the baseline's, and each later window's share of what the plan's max_loss_rate
needs). bench/run runs baseline, the migration, post and soak x
rounds for every trust, `xargs -P C` like its psql floor, and reports the total with the soak
waiting added: a gated rollout cannot be faster than the statements it must run.
"""
import os
import sys

import yaml

MIN_EARLY_PASS = 15  # src/health/sequential/mod.rs


def main():
    plan_path, out = sys.argv[1], sys.argv[2]
    baseline_writes, writes = int(sys.argv[3]), int(sys.argv[4])
    with open(plan_path) as f:
        health = yaml.safe_load(f)["health"]
    probes = health.get("latency_probes", [])
    wp = health.get("write_probe")
    head = ["\\set ON_ERROR_STOP 1", "\\o /dev/null"]
    # Each probe's parameters, drawn once from the trust's own data as flotilla does.
    for n, p in enumerate(probes):
        sql = p["sql"].strip().rstrip(";")
        if "params" in p:
            count = max(1, p.get("samples", 40))
            cols = ", ".join(
                f"(a)[{k} % cardinality(a) + 1] AS p{n}_{k}" for k in range(count)
            )
            head.append("\\o")
            head.append(
                f"SELECT {cols} FROM (SELECT array_agg(x) AS a FROM ({p['params']}) s(x)) t \\gset"
            )
            head.append("\\o /dev/null")
            head.append(f"PREPARE q{n}(bigint) AS {sql};")
        else:
            head.append(f"PREPARE q{n} AS {sql};")
    if wp:
        head.append(f"PREPARE w(bigint, text) AS {wp['insert'].strip().rstrip(';')};")
        head.append(f"PREPARE r(bigint) AS {wp['read_back'].strip().rstrip(';')};")
        head.append(f"PREPARE d(bigint) AS {wp['cleanup'].strip().rstrip(';')};")

    def window(samples_of, integrity, base_id, writes):
        lines = list(head)
        for inv in health.get("invariants", []):
            lines.append(inv["sql"].strip().rstrip(";") + ";")
        if integrity:
            for table, columns in health.get("integrity", {}).items():
                lines.append(f"COPY (SELECT {', '.join(columns)} FROM {table}) TO STDOUT;")
        for n, p in enumerate(probes):
            for i in range(samples_of(p)):
                arg = f"(:p{n}_{i % max(1, p.get('samples', 40))})" if "params" in p else ""
                lines.append(f"EXECUTE q{n}{arg};")
        if wp:
            ids = [base_id - i for i in range(writes)]
            for i in ids:
                lines.append(f"EXECUTE w({i}, 'floor-{-i}');")
                lines.append(f"EXECUTE r({i});")
            lines.append("BEGIN;")
            lines += [f"EXECUTE d({i});" for i in ids]
            lines.append("COMMIT;")
        return "\n".join(lines) + "\n"

    os.makedirs(out, exist_ok=True)
    files = {
        "baseline.sql": window(lambda p: p.get("samples", 40), True, -9_000_000_000, baseline_writes),
        "post.sql": window(lambda p: min(MIN_EARLY_PASS, p.get("samples", 40)), True, -9_100_000_000, writes),
        "soak.sql": window(lambda p: min(MIN_EARLY_PASS, p.get("samples", 40)), False, -9_200_000_000, writes),
    }
    for name, text in files.items():
        with open(os.path.join(out, name), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
