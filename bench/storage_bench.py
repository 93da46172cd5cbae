#!/usr/bin/env python3
"""Storage engine benchmark: LogStore (storage/) against the raw rate of the same disk, in one run.

  storage_bench.py [--dir DIR] [-d SECS] [--keys 100000,1000000] [--get-keys N] [--out FILE] [--quick]

What it measures (one JSON line each, on stdout and appended to --out; fields as in ../shared/bench):
  raw disk     fsync and fdatasync of 100-byte appends: ../shared/bench/fsync_bench.py run as a subprocess on
               the same directory (tool "fsync_bench", target "disk"); every ratio below divides by these.
  apply        durable `apply` (sync="batch": one write + one fdatasync per call) at 1, 8 and 64 ops per call,
               ~30-byte keys cycling over 100k names, 100-byte random values, for -d seconds each, on a fresh
               store. ops/s, apply calls/s, latency of one call; ratio_to_raw_fdatasync = calls/s over the raw
               fdatasync rate ("fsync efficiency"), and at batch 1 ratio_to_raw_fsync too.
  get          random `get` of existing keys in a store of --get-keys keys (page cache warm), for -d seconds;
               throughput from an untimed loop, latency from a second, per-call timed loop.
  list         `list(prefix)` of a folder with 2,000 children (10% of them sub-folders), median over 200 calls.
  open         start-up: `LogStore.open` until it returns, in a fresh subprocess (this script, hidden
               --probe-open), for each --keys size, in three states: "sealed" (as a server leaves it after
               a clean stop: close() hints the active segment too), "all" (every segment
               hinted) and "none" (hint files deleted). The store is built with sync="none", 1000 ops per
               apply. Page cache warm (the files were just written); repeated, median reported.
  ram          VmRSS of the probe just before and just after open: (after - before) / keys = bytes per key.
  space        20k keys x 20 overwrites of 100-byte values, 64 ops per apply, segment_bytes_max 4 MiB:
               disk_bytes / live bytes (sum of len(key) + len(value) of live keys) before and after
               compact(include_active=True); and a second store where maintain() runs after every round
               (as the background thread would), reporting the worst and final ratio.
A markdown table at the end sets every figure against its aim. Every loop is bounded in time or count;
the scratch directory (default: a fresh mkdtemp under /tmp) is removed at the end unless --keep.
"""

import argparse
import gc
import json
import os
import pathlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_BENCH = pathlib.Path(__file__).resolve().parents[2] / "shared" / "bench"
sys.path.insert(0, str(SHARED_BENCH))
sys.path.insert(0, str(REPO))
import benchlib  # noqa: E402

from storage import LogStore  # noqa: E402

VALUE_SIZE = 100
KEY_SPACE = 100_000
BUILD_BATCH = 1000
LIST_CHILDREN = 2000
AIMS = {
    "apply1_vs_fsync": 0.8,
    "apply64_ops": 50_000,
    "get_ops": 200_000,
    "open_1m_hints_s": 1.5,
    "ram_per_key": 300,
    "space_amp_after": 1.5,
}


def key_name(i, prefix="logical/a1b2c3d4/"):
    """~30-byte key: 'logical/a1b2c3d4/key-000000042'."""
    return f"{prefix}key-{i:09d}"


def value_pool(n=4096, seed=1):
    rng = random.Random(seed)
    return [rng.randbytes(VALUE_SIZE) for _ in range(n)]


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def record(op, **fields):
    rec = {"ts": benchlib.now_iso(), "tool": "storage_bench", "target": "logstore", "op": op}
    rec.update(fields)
    return rec


# --- raw disk -------------------------------------------------------------------------------------------


def run_raw_disk(a, work):
    """fsync_bench.py in a subprocess on the same directory -> {"fsync": rec, "fdatasync": rec}."""
    cmd = [sys.executable, str(SHARED_BENCH / "fsync_bench.py"), "--dir", work, "-d", str(a.duration),
           "--modes", "fsync,fdatasync"]
    seen = quiet(a)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=2 * a.duration + 120, check=True)
    raw = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            rec["label"] = "storage_bench-raw"
            rec.update(seen)
            benchlib.emit(rec, a.out)
            raw[rec["op"]] = rec
    if set(raw) != {"fsync", "fdatasync"}:
        benchlib.die(f"fsync_bench.py gave {sorted(raw)}; stderr: {proc.stderr[-2000:]}")
    return raw


# --- durable apply --------------------------------------------------------------------------------------


def quiet(a):
    """benchlib.wait_quiet when --quiet-wait is set -> fields recording what was seen."""
    if a.quiet_wait <= 0:
        return {}
    bg, waited = benchlib.wait_quiet(a.quiet_wait, 0.35)
    return {"bg_cores_before": bg, "quiet_waited_s": waited}


def bench_apply(a, work, batch, raw):
    """Durable applies of `batch` ops each for a.duration seconds on a fresh store."""
    path = os.path.join(work, f"apply-{batch}")
    seen = quiet(a)
    values = value_pool()
    store = LogStore.open(path, sync="batch", background=False)
    index, n, lat = 0, 0, []
    pc = time.perf_counter
    try:
        warm_end = pc() + min(0.3, a.duration / 10)
        while pc() < warm_end:
            index += 1
            store.apply(index, [("put", key_name((n + j) % KEY_SPACE), values[j % 4096]) for j in range(batch)])
            n = (n + batch) % KEY_SPACE
        sampler = benchlib.CpuSampler([])
        sampler.start()
        t0 = pc()
        t_end = t0 + a.duration
        while True:
            ops = [("put", key_name((n + j) % KEY_SPACE), values[(index + j) % 4096]) for j in range(batch)]
            t = pc()
            if t >= t_end:
                break
            index += 1
            store.apply(index, ops)
            lat.append(pc() - t)
            n = (n + batch) % KEY_SPACE
        elapsed = pc() - t0
        cpu = sampler.stop()
    finally:
        store.close()
        shutil.rmtree(path, ignore_errors=True)
    calls_s = len(lat) / elapsed
    rec = record(f"apply_batch{batch}", concurrency=1, batch_ops=batch, duration_s=round(elapsed, 3),
                 apply_calls=len(lat), ops_per_s=round(calls_s * batch, 1), apply_calls_per_s=round(calls_s, 1))
    rec.update(benchlib.lat_summary(lat))
    rec["ratio_to_raw_fdatasync"] = round(calls_s / raw["fdatasync"]["ops_per_s"], 3)
    if batch == 1:
        rec["ratio_to_raw_fsync"] = round(calls_s / raw["fsync"]["ops_per_s"], 3)
    rec.update({"errors": 0, "value_size": VALUE_SIZE, "sync": "batch"})
    rec.update(cpu)
    rec.update(seen)
    return rec


# --- building stores ------------------------------------------------------------------------------------


def build_store(path, n, extra_keys=(), **open_kw):
    """A store of n keys (plus extra_keys), sync="none", BUILD_BATCH ops per apply. Returns (store, secs)."""
    values = value_pool()
    store = LogStore.open(path, sync="none", background=False, **open_kw)
    names = (key_name(i) for i in range(n))
    pending, index, t0 = [], 0, time.perf_counter()
    for i, name in enumerate(list(names) + list(extra_keys)):
        pending.append(("put", name, values[i % 4096]))
        if len(pending) == BUILD_BATCH:
            index += 1
            store.apply(index, pending)
            pending = []
    if pending:
        store.apply(index + 1, pending)
    return store, time.perf_counter() - t0


def list_folder_keys(folder):
    """LIST_CHILDREN children under `folder`: 90% leaves, 10% sub-folders holding 5 keys each."""
    keys = []
    for i in range(LIST_CHILDREN):
        if i % 10 == 9:
            keys += [f"{folder}sub-{i:05d}/item-{j}" for j in range(5)]
        else:
            keys.append(f"{folder}leaf-{i:05d}")
    return keys


# --- reads ----------------------------------------------------------------------------------------------


def bench_get(a, store, n):
    """Random gets of existing keys: throughput untimed per call, then latency timed per call."""
    rng = random.Random(7)
    names = [key_name(rng.randrange(n)) for _ in range(65536)]
    pc, get, done, missing = time.perf_counter, store.get, 0, 0
    seen = quiet(a)
    sampler = benchlib.CpuSampler([])
    sampler.start()
    t0 = pc()
    t_end = t0 + a.duration
    while pc() < t_end:
        for name in names[done % 65536:done % 65536 + 1024]:
            if get(name) is None:
                missing += 1
        done += 1024
    elapsed = pc() - t0
    cpu = sampler.stop()
    lat, t_end = [], pc() + min(1.0, a.duration / 2)
    for name in names:
        t = pc()
        get(name)
        lat.append(pc() - t)
        if t > t_end:
            break
    rec = record("get", concurrency=1, keys=n, duration_s=round(elapsed, 3), ops=done,
                 ops_per_s=round(done / elapsed, 1))
    rec.update(benchlib.lat_summary(lat))
    rec.update({"errors": missing, "value_size": VALUE_SIZE, "lat_samples": len(lat)})
    rec.update(cpu)
    rec.update(seen)
    return rec


def bench_list(a, store, folder, calls=200):
    """Median latency of list(folder) over `calls` calls (bounded by a.duration too)."""
    expected = len(store.list(folder))
    lat, pc = [], time.perf_counter
    t_end = pc() + max(a.duration, 1.0)
    for _ in range(calls):
        t = pc()
        got = store.list(folder)
        lat.append(pc() - t)
        if len(got) != expected or t > t_end:
            break
    rec = record("list", concurrency=1, children=expected, calls=len(lat),
                 ops_per_s=round(len(lat) / sum(lat), 1))
    rec.update(benchlib.lat_summary(lat))
    rec["errors"] = 0 if expected == LIST_CHILDREN else 1
    return rec


def run_reads(a, work):
    path = os.path.join(work, "reads")
    folder = "logical/a1b2c3d4/folder/"
    store, build_s = build_store(path, a.get_keys, list_folder_keys(folder))
    try:
        recs = [bench_get(a, store, a.get_keys), bench_list(a, store, folder)]
    finally:
        store.close()
        shutil.rmtree(path, ignore_errors=True)
    recs[0]["build_s"] = round(build_s, 3)
    return recs


# --- start-up and RAM -----------------------------------------------------------------------------------


def probe_open(path):
    """Hidden subcommand: open the store in this fresh process; print open time and RSS delta as JSON."""
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    store = LogStore.open(path, sync="batch", background=False)
    open_s = time.perf_counter() - t0
    after = rss_bytes()
    keys = len(store)
    store.close()
    print(json.dumps({"open_s": open_s, "rss_before": before, "rss_after": after, "keys": keys}))


def run_probe(path, timeout=900):
    cmd = [sys.executable, os.path.abspath(__file__), "--probe-open", path]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"probe failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def segment_files(path):
    gen = [d for d in os.listdir(path) if d.startswith("gen-")]
    names = os.listdir(os.path.join(path, gen[0]))
    segs = [n for n in names if n.endswith(".seg")]
    hints = [os.path.join(path, gen[0], n) for n in names if n.endswith(".hint")]
    return segs, hints


def open_state(a, path, n, hints, build_s):
    """Median of a.open_repeat probes of the store as it is now -> one record."""
    probes = [run_probe(path) for _ in range(a.open_repeat)]
    segs, hint_files = segment_files(path)
    times = sorted(p["open_s"] for p in probes)
    mid = probes[[p["open_s"] for p in probes].index(times[len(times) // 2])]
    rec = record("open", keys=n, hints=hints, segments=len(segs), hint_files=len(hint_files),
                 open_s=round(statistics.median(times), 4), open_s_min=round(times[0], 4),
                 open_s_max=round(times[-1], 4), repeats=len(probes),
                 ops_per_s=round(n / statistics.median(times), 1),
                 rss_before_mb=round(mid["rss_before"] / 2**20, 1), rss_after_mb=round(mid["rss_after"] / 2**20, 1),
                 ram_bytes_per_key=round((mid["rss_after"] - mid["rss_before"]) / max(1, mid["keys"]), 1),
                 keys_loaded=mid["keys"], build_s=round(build_s, 3))
    rec["errors"] = sum(p["keys"] != n for p in probes)
    return rec


def run_startup(a, work, n):
    """Build n keys, then probe open in three hint states: sealed-only, all, none."""
    path = os.path.join(work, f"open-{n}")
    store, build_s = build_store(path, n)
    try:
        store.maintain()  # hints for the sealed segments, as the background thread would write them
    finally:
        store.close()
    recs = [open_state(a, path, n, "sealed", build_s)]
    store = LogStore.open(path, sync="none", background=False)
    try:
        store.maintain()  # the previous active segment is sealed now: hint it too
    finally:
        store.close()
    recs.append(open_state(a, path, n, "all", build_s))
    for hint in segment_files(path)[1]:
        os.unlink(hint)
    recs.append(open_state(a, path, n, "none", build_s))
    shutil.rmtree(path, ignore_errors=True)
    return recs


# --- space amplification --------------------------------------------------------------------------------


def overwrite_rounds(store, nkeys, rounds, batch=64, each_round=None):
    """nkeys keys written `rounds` times (100-byte values); returns (live_bytes, expected values dict)."""
    values = value_pool(seed=3)
    index, expected = 0, {}
    for r in range(rounds):
        for first in range(0, nkeys, batch):
            ops = [("put", key_name(i), values[(i + r) % 4096]) for i in range(first, min(nkeys, first + batch))]
            index += 1
            store.apply(index, ops)
            expected.update((k, v) for _, k, v in ops)
        if each_round:
            each_round()
    live = sum(len(k.encode()) + len(v) for k, v in expected.items())
    return live, expected


def gen_bytes(store):
    """(segment bytes, hint bytes) of the store's current generation."""
    names = os.listdir(store.generation_dir)
    size = lambda n: os.path.getsize(os.path.join(store.generation_dir, n))  # noqa: E731
    return sum(size(n) for n in names if n.endswith(".seg")), sum(size(n) for n in names if n.endswith(".hint"))


def check_contents(store, expected, samples=2000):
    rng = random.Random(5)
    names = rng.sample(sorted(expected), min(samples, len(expected)))
    bad = sum(store.get(k) != expected[k] for k in names)
    return bad + (len(store) != len(expected))


def bench_space(a, work):
    """Overwrite-heavy load: amplification before/after full compaction; then with maintain() per round."""
    seg_max = 4 * 1024 * 1024
    path = os.path.join(work, "space")
    store = LogStore.open(path, sync="none", background=False, segment_bytes_max=seg_max)
    try:
        live, expected = overwrite_rounds(store, a.space_keys, a.space_rounds)
        before = store.disk_bytes()
        t0 = time.perf_counter()
        store.compact(include_active=True)
        compact_s = time.perf_counter() - t0
        after = store.disk_bytes()
        seg_after, hint_after = gen_bytes(store)
        errors = check_contents(store, expected)
    finally:
        store.close()
    reopened = LogStore.open(path, sync="none", background=False)
    errors += check_contents(reopened, expected)
    reopened.close()
    shutil.rmtree(path, ignore_errors=True)
    rec = record("space_amp", keys=a.space_keys, overwrites=a.space_rounds, segment_bytes_max=seg_max,
                 live_bytes=live, disk_bytes_before=before, disk_bytes_after=after,
                 space_amp_before=round(before / live, 3), space_amp_after=round(after / live, 3),
                 segment_bytes_after=seg_after, hint_bytes_after=hint_after,
                 space_amp_after_segments_only=round(seg_after / live, 3), compact_s=round(compact_s, 3), errors=errors)
    return [rec, bench_space_maintained(a, work, seg_max)]


def bench_space_maintained(a, work, seg_max):
    path = os.path.join(work, "space-maintained")
    store = LogStore.open(path, sync="none", background=False, segment_bytes_max=seg_max)
    seen = []
    try:
        t0 = time.perf_counter()
        live, expected = overwrite_rounds(store, a.space_keys, a.space_rounds,
                                          each_round=lambda: (store.maintain(), seen.append(store.disk_bytes())))
        elapsed = time.perf_counter() - t0
        errors = check_contents(store, expected)
    finally:
        store.close()
    shutil.rmtree(path, ignore_errors=True)
    return record("space_amp_maintained", keys=a.space_keys, overwrites=a.space_rounds, segment_bytes_max=seg_max,
                  live_bytes=live, space_amp_max=round(max(seen) / live, 3), space_amp_final=round(seen[-1] / live, 3),
                  elapsed_s=round(elapsed, 3), errors=errors)


# --- summary --------------------------------------------------------------------------------------------


def fmt(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def verdict(value, aim, higher_is_better=True):
    if value is None:
        return "-", "-"
    ratio = value / aim if higher_is_better else aim / value
    return f"{ratio:.2f}", "yes" if ratio >= 1 else "**no**"


def summary_rows(res):
    raw, rows = res["raw"], []
    rows.append(("raw fsync (same disk)", f"{fmt(raw['fsync']['ops_per_s'])}/s", "1.00× fsync", "-", "-", "-"))
    rows.append(("raw fdatasync (same disk)", f"{fmt(raw['fdatasync']['ops_per_s'])}/s",
                 f"{raw['fdatasync']['ops_per_s'] / raw['fsync']['ops_per_s']:.2f}× fsync", "-", "-", "-"))
    for rec in res["apply"]:
        b = rec["batch_ops"]
        ratio = f"{rec['ratio_to_raw_fdatasync']:.2f}× fdatasync"
        if b == 1:
            ratio = f"{rec['ratio_to_raw_fsync']:.2f}× fsync, " + ratio
            aim, (vs, ok) = "≥ 0.8× raw fsync", verdict(rec["ratio_to_raw_fsync"], AIMS["apply1_vs_fsync"])
        elif b == 64:
            aim, (vs, ok) = "≥ 50,000 ops/s", verdict(rec["ops_per_s"], AIMS["apply64_ops"])
        else:
            aim, vs, ok = "-", "-", "-"
        value = f"{fmt(rec['ops_per_s'])} ops/s ({fmt(rec['apply_calls_per_s'])} calls/s, p50 {rec['p50_ms']} ms)"
        rows.append((f"durable apply, batch {b}", value, ratio, aim, vs, ok))
    get, lst = res["reads"]
    rows.append((f"get, {fmt(get['keys'])} keys", f"{fmt(get['ops_per_s'])}/s (p50 {get['p50_ms']} ms)", "-",
                 "≥ 200,000/s", *verdict(get["ops_per_s"], AIMS["get_ops"])))
    rows.append((f"LIST, {lst['children']} children", f"p50 {lst['p50_ms']} ms, p99 {lst['p99_ms']} ms", "-",
                 "-", "-", "-"))
    return rows + startup_rows(res) + space_rows(res)


def startup_rows(res):
    rows, biggest = [], max(r["keys"] for r in res["open"])
    for rec in res["open"]:
        aim, vs, ok = "-", "-", "-"
        if rec["keys"] == 1_000_000 and rec["hints"] == "all":
            aim, (vs, ok) = "≤ 1.5 s", verdict(rec["open_s"], AIMS["open_1m_hints_s"], False)
        rows.append((f"open, {fmt(rec['keys'])} keys, hints: {rec['hints']}",
                     f"{rec['open_s']:.3f} s (min {rec['open_s_min']:.3f})",
                     f"{fmt(rec['ops_per_s'])} keys/s", aim, vs, ok))
    for rec in res["open"]:
        if rec["keys"] == biggest and rec["hints"] == "all":
            rows.append((f"RAM per key ({fmt(biggest)} keys, RSS delta of open)", f"{rec['ram_bytes_per_key']:.0f} B",
                         "-", "≤ 300 B", *verdict(rec["ram_bytes_per_key"], AIMS["ram_per_key"], False)))
    return rows


def space_rows(res):
    sp, mt = res["space"]
    label = f"{fmt(sp['keys'])} keys × {sp['overwrites']} overwrites"
    return [
        (f"space amp before compaction ({label})", f"{sp['space_amp_before']:.2f}×", "-", "-", "-", "-"),
        (f"space amp after compact() ({label})",
         f"{sp['space_amp_after']:.2f}× ({sp['space_amp_after_segments_only']:.2f}× without hint files)", "-", "≤ 1.5×",
         *verdict(sp["space_amp_after"], AIMS["space_amp_after"], False)),
        ("space amp, maintain() each round: worst / final",
         f"{mt['space_amp_max']:.2f}× / {mt['space_amp_final']:.2f}×", "-", "-", "-", "-"),
    ]


def print_table(res):
    rows = summary_rows(res)
    print("\n| figure | value | ratio to raw disk | aim | value vs aim | met |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    errors = [r for group in res.values() for r in (group.values() if isinstance(group, dict) else group)
              if r.get("errors")]
    if errors:
        print(f"\n{len(errors)} measurement(s) reported errors: " + ", ".join(r["op"] for r in errors))


# --- main -----------------------------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="scratch directory (default: a fresh mkdtemp under /tmp, removed at the end)")
    ap.add_argument("--duration", "-d", type=float, help="seconds per timed loop (default 3; --quick 1)")
    ap.add_argument("--keys", help="comma list of start-up sizes (default 100000,1000000; --quick 20000)")
    ap.add_argument("--get-keys", type=int, help="keys in the get/list store (default 100000; --quick 20000)")
    ap.add_argument("--open-repeat", type=int, default=3, help="probes per start-up state (median reported)")
    ap.add_argument("--out", help="append the JSON lines to this file too")
    ap.add_argument("--quick", action="store_true", help="small sizes and 1 s loops: a smoke run")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--quiet-wait", type=float, default=0.0,
                    help="before each timed loop wait up to S s for foreign CPU load < 0.35 cores (0: off)")
    ap.add_argument("--probe-open", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.duration = a.duration or (1.0 if a.quick else 3.0)
    a.keys = benchlib.parse_int_list(a.keys or ("20000" if a.quick else "100000,1000000"))
    a.get_keys = a.get_keys or (20_000 if a.quick else 100_000)
    a.space_keys, a.space_rounds = (5_000, 10) if a.quick else (20_000, 20)
    if a.duration <= 0 or a.duration > 600 or a.open_repeat < 1:
        ap.error("-d must be in (0, 600] and --open-repeat >= 1")
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    return a


def run_all(a, work):
    res = {"raw": run_raw_disk(a, work)}
    res["apply"] = []
    for batch in (1, 8, 64):
        res["apply"].append(bench_apply(a, work, batch, res["raw"]))
        benchlib.emit(res["apply"][-1], a.out)
    res["reads"] = run_reads(a, work)
    for rec in res["reads"]:
        benchlib.emit(rec, a.out)
    res["open"] = []
    for n in a.keys:
        for rec in run_startup(a, work, n):
            res["open"].append(rec)
            benchlib.emit(rec, a.out)
    res["space"] = bench_space(a, work)
    for rec in res["space"]:
        benchlib.emit(rec, a.out)
    return res


def main(argv=None):
    a = parse_args(argv)
    if a.probe_open:
        probe_open(a.probe_open)
        return
    created = a.dir is None
    work = a.dir or tempfile.mkdtemp(prefix="storage_bench.", dir="/tmp")
    os.makedirs(work, exist_ok=True)
    try:
        print_table(run_all(a, work))
    finally:
        if created and not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
