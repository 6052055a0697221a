#!/usr/bin/env python3
"""Full-refresh comparison of several source-convex binaries against transfer-only, in one run.

For tuning the connector: the full benchmark (bench/run.sh) measures one binary; this runs
only the full-refresh scenarios of it ("full refresh 2xN", "full refresh 1xM"), with every
given binary and transfer-only interleaved, and prints median wall, records/s, CPU µs per
record and the ratio to transfer-only of the same run.

  bench/compare.py --emulator-bin E --transfer-bin T [--runner-bin R] \\
      --ours base=/tmp/sc-base --ours new=target/.../source-convex [--repeat 5] \\
      [--docs2 100000] [--docs1 1000000]   (0 skips a scenario)
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench


def run_scenario(b, o, emu, name, tables, expect):
    labels = ["transfer-only"] + [label for label, _ in o.ours]
    runs = {label: [] for label in labels}
    for _ in range(o.repeat):
        for label in labels:
            if label == "transfer-only":
                program = "transfer-only"
            else:
                program = "ours"
                b.o.ours_bin = dict(o.ours)[label]
            row = b.measure(emu, name, program, tables=tables, mode="full_refresh", expect=expect)
            if row["problem"]:
                raise bench.Failure(f"{name} / {label}: {row['problem']}")
            runs[label].append(row)
    t_wall = statistics.median(r["wall"] for r in runs["transfer-only"])
    print(f"\n## {name} (n = {o.repeat}, medians)")
    print("| program | wall s | records/s | CPU µs/rec | ratio to transfer-only | walls |")
    print("| --- | --: | --: | --: | --: | --- |")
    for label in labels:
        rs = runs[label]
        wall = statistics.median(r["wall"] for r in rs)
        cpu = statistics.median(r["cpu"] for r in rs)
        walls = ", ".join(f"{r['wall']:.3f}" for r in rs)
        print(f"| {label} | {wall:.3f} | {expect / wall:,.0f} | {cpu / expect * 1e6:.2f} "
              f"| {t_wall / wall:.2f}× | {walls} |")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emulator-bin", required=True)
    ap.add_argument("--transfer-bin", required=True)
    ap.add_argument("--runner-bin", default="")
    ap.add_argument("--ours", action="append", default=[], required=True,
                    help="LABEL=PATH of a source-convex binary (repeatable)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--docs2", type=int, default=100_000, help="documents per table, 2 tables")
    ap.add_argument("--docs1", type=int, default=1_000_000, help="documents, 1 table")
    ap.add_argument("--workdir", default=os.path.join(bench.HERE, "out", "compare"))
    ap.add_argument("--timeout", type=float, default=600)
    o = ap.parse_args()
    o.ours = [tuple(x.split("=", 1)) for x in o.ours]
    if not o.runner_bin:
        o.runner_bin = os.path.join(os.path.dirname(os.path.abspath(o.transfer_bin)), "bench-run")
    o.ours_bin = o.ours[0][1]
    b = bench.Bench(o)
    seed = 7
    for docs, ntab, tag in ((o.docs2, 2, "full"), (o.docs1, 1, "1m")):
        if not docs:
            continue
        name = f"full refresh {ntab}x{docs // 1000}k"
        emu = bench.Emulator(o.emulator_bin, ["--tables", ntab, "--docs", docs, "--doc-size", 400,
                                              "--seed", seed], b.work, tag)
        try:
            run_scenario(b, o, emu, name, emu.tables[:ntab], ntab * docs)
        finally:
            emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
