"""bench/trace_summary.py TRACE.csv [--from REGEX] [--skip N] [--top K] [--marginal]: what a CUDA run's GPU time went to,
from the timeline bench/cupti_trace.c writes.

Prints, over the window (from the Nth kernel whose name matches --from, default the first kernel, to
the end): the wall span first start -> last end, the time some kernel or copy ran (the union of the
intervals), the idle time between them (with the count and the largest gaps), and per kernel name the
total time, the count and its share of the busy time. Busy vs span is what ncu cannot show: ncu
replays each kernel alone.
"""
import argparse
import collections
import csv
import re
import subprocess


def short(name):
    """A kernel's demangled name without its return type and argument list: 'void
    (anonymous namespace)::k_fwd_out<float, 64>(Geo, ...)' -> 'k_fwd_out<float, 64>'."""
    name = name.replace("(anonymous namespace)::", "")
    name = re.sub(r"^void ", "", name)
    name = re.sub(r"\(.*", "", name)
    return name[:80]


def demangle(names):
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, timeout=30).stdout
        d = out.splitlines()
        return dict(zip(names, d)) if len(d) == len(names) else {n: n for n in names}
    except (OSError, subprocess.SubprocessError):
        return {n: n for n in names}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--from", dest="start", default=None, help="window starts at a kernel whose name matches")
    ap.add_argument("--skip", type=int, default=0, help="... the (skip+1)-th such kernel")
    ap.add_argument("--until", default=None, help="window ends before the first later kernel matching this")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--gap-us", type=float, default=2.0, help="gaps listed above this many microseconds")
    ap.add_argument("--marginal", action="store_true",
                    help="per kernel name, also what it adds to the timeline: its end minus the latest earlier end")
    a = ap.parse_args()
    rows = []
    with open(a.trace) as f:
        for r in csv.DictReader(f):
            rows.append((int(r["start_ns"]), int(r["end_ns"]), r["kind"], r["name"]))
    rows.sort()
    if not rows:
        print("no records")
        return
    names = demangle(sorted({r[3] for r in rows if r[2] == "K"}))
    i0 = 0
    if a.start:
        hits = [i for i, r in enumerate(rows) if r[2] == "K" and re.search(a.start, names.get(r[3], r[3]))]
        if len(hits) <= a.skip:
            print(f"--from {a.start!r}: only {len(hits)} matching kernels")
            return
        i0 = hits[a.skip]
    i1 = len(rows)
    if a.until:
        for i in range(i0 + 1, len(rows)):
            if rows[i][2] == "K" and re.search(a.until, names.get(rows[i][3], rows[i][3])):
                i1 = i
                break
    w = rows[i0:i1]
    span = max(r[1] for r in w) - w[0][0]
    busy, gaps, cur_s, cur_e = 0, [], w[0][0], w[0][1]
    for s, e, _, _ in w[1:]:
        if s > cur_e:
            busy += cur_e - cur_s
            gaps.append((s - cur_e, cur_e))
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    idle = span - busy
    print(f"window: {len(w)} records, span {span / 1e6:.3f} ms, busy {busy / 1e6:.3f} ms, idle {idle / 1e6:.3f} ms "
          f"({100 * idle / span:.1f}%) in {len(gaps)} gaps")
    big = sorted(gaps, reverse=True)[:8]
    if big:
        print("largest gaps (us): " + ", ".join(f"{g / 1e3:.1f}" for g, _ in big))
    over = [g for g, _ in gaps if g > a.gap_us * 1e3]
    print(f"gaps over {a.gap_us:g} us: {len(over)}, {sum(over) / 1e6:.3f} ms; "
          f"under: {len(gaps) - len(over)}, {(sum(g for g, _ in gaps) - sum(over)) / 1e6:.3f} ms")
    agg = collections.defaultdict(lambda: [0, 0])
    for s, e, k, n in w:
        key = short(names.get(n, n)) if k == "K" else n.split(" bytes")[0]
        agg[key][0] += e - s
        agg[key][1] += 1
    tot = sum(v[0] for v in agg.values())
    for key, (ns, cnt) in sorted(agg.items(), key=lambda x: -x[1][0])[:a.top]:
        print(f"{ns / 1e6:9.3f} ms {100 * ns / tot:5.1f}% x{cnt:5d} {ns / cnt / 1e3:8.1f} us  {key}")
    if a.marginal:
        # With programmatic dependent launch a kernel starts while its predecessor drains and waits,
        # so its duration above counts the overlap too. On one stream the ends are ordered: what a
        # kernel adds to the wall time is its end minus the latest end before it (gaps included).
        marg = collections.defaultdict(lambda: [0, 0])
        last = w[0][0]
        for s, e, k, n in sorted(w, key=lambda r: r[1]):
            key = short(names.get(n, n)) if k == "K" else n.split(" bytes")[0]
            marg[key][0] += max(0, e - last)
            marg[key][1] += 1
            last = max(last, e)
        print("marginal (end minus the previous end; sums to the span):")
        for key, (ns, cnt) in sorted(marg.items(), key=lambda x: -x[1][0])[:a.top]:
            print(f"{ns / 1e6:9.3f} ms {100 * ns / span:5.1f}% x{cnt:5d} {ns / cnt / 1e3:8.1f} us  {key}")


if __name__ == "__main__":
    main()
