"""``prepare-data`` against the floor of its cost: reading every point of a 100,000-point collection.

Builds (once, cached under ``.mathpal/bench/``) a local Qdrant collection of
crawl-like points from the sample corpus (chunked problems, HTML, NFD, re-crawled
duplicates; ``mathpal_commands/demo/points.py``), payload-only by default as the issue's
reference numbers are, with ``--vectors`` the 128-d vectors of the sample collection.
Then, each in a fresh Python process, ``--rounds`` times:

- ``raw scroll``: open the store and scroll every payload (``with_payload=True``, no
  vectors), doing nothing with them, at each page size of ``--pages``;
- ``export``: ``dataprep.pipeline.run_export`` exactly as ``mathpal prepare-data``
  calls it (open, scroll, build, near-duplicate search when there are vectors, write);
- ``command``: ``python -m mathpal_cli prepare-data`` end to end, interpreter start
  and imports included.

It prints one table (medians over the rounds): seconds to open the store and to
scroll / export, total, points per second, and peak memory: ``tree RSS`` is the
largest sum of the resident sets of the measured process and its children
(sampled every 20 ms; pages shared by the forked worker count twice, so it is an
upper bound), ``max RSS`` the peak of the measured process itself and ``worker``
that of the export's worker process (``ru_maxrss``).  The ratio columns are total
time over the best raw scroll's, and over a raw scroll with Python's cyclic GC off
(the export pauses the GC, which alone makes a scroll faster: the fair floor).

    python -m benchmarks.prepare_data                    # 100,000 payload-only points
    python -m benchmarks.prepare_data --points 20000 --vectors --pages 32768
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COLLECTION = "bench_exams"
CACHE_VERSION = 1


# --------------------------------------------------------------------------- the collection


def store_dir(cache: Path, points: int, vectors: bool) -> Path:
    return cache / f"qdrant-{points}{'-vectors' if vectors else ''}"


def build_store(folder: Path, points: int, vectors: bool) -> None:
    """Write ``points`` sample points into a fresh local store (minutes: local upserts are slow)."""
    import warnings

    from qdrant_client import QdrantClient, models

    from mathpal_commands.demo.points import point_id, point_vector, sample_points

    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    started = time.perf_counter()
    problems = int(points / 1.09) + 100  # about 1.096 points per problem (chunks, re-crawls)
    payloads = sample_points(problems)
    while len(payloads) < points:
        problems = int(problems * 1.02) + 10
        payloads = sample_points(problems)
    payloads = payloads[:points]
    print(f"building {folder}: {points:,} points from {problems:,} sample problems", flush=True)
    if folder.exists():
        shutil.rmtree(folder)
    client = QdrantClient(path=str(folder))
    try:
        if vectors:
            config = models.VectorParams(size=len(point_vector(payloads[0])), distance=models.Distance.COSINE)
        else:
            config = {}
        client.create_collection(COLLECTION, vectors_config=config)
        batch = 4096
        for start in range(0, points, batch):
            chunk = payloads[start : start + batch]
            client.upsert(
                COLLECTION,
                points=[
                    models.PointStruct(id=point_id(p), vector=point_vector(p) if vectors else {}, payload=p)
                    for p in chunk
                ],
            )
            print(f"  {start + len(chunk):,} points", flush=True)
    finally:
        client.close()
    (folder / "bench.json").write_text(json.dumps({"points": points, "vectors": vectors, "version": CACHE_VERSION}))
    print(f"built in {time.perf_counter() - started:.0f} s", flush=True)


def ensure_store(cache: Path, points: int, vectors: bool) -> Path:
    folder = store_dir(cache, points, vectors)
    marker = folder / "bench.json"
    expected = {"points": points, "vectors": vectors, "version": CACHE_VERSION}
    if not marker.is_file() or json.loads(marker.read_text()) != expected:
        build_store(folder, points, vectors)
    return folder


# --------------------------------------------------------------------------- children (one measurement each)


def _maxrss() -> dict:
    """Peak RSS of this process and of its largest finished child (the export's worker), bytes."""
    return {
        "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "worker_max_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }


def child_scroll(store: Path, page: int, gc_off: bool) -> dict:
    import gc
    import warnings

    from qdrant_client import QdrantClient

    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    if gc_off:
        gc.disable()
    started = time.perf_counter()
    client = QdrantClient(path=str(store))
    opened = time.perf_counter()
    n, offset = 0, None
    while True:
        records, offset = client.scroll(COLLECTION, limit=page, offset=offset, with_payload=True, with_vectors=False)
        n += len(records)
        if offset is None:
            break
    done = time.perf_counter()
    client.close()
    return {"points": n, "open_s": opened - started, "work_s": done - opened, **_maxrss()}


def child_export(store: Path, out: Path, page: int | None) -> dict:
    import warnings

    from dataprep.pipeline import ExportSettings, run_export
    from dataprep.qdrant_source import open_source

    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    marks: dict[str, float] = {}

    def opener():
        marks["open_start"] = time.perf_counter()
        client = open_source(store, None)
        marks["opened"] = time.perf_counter()
        return client

    started = time.perf_counter()
    manifest = run_export(
        opener, ExportSettings(collection=COLLECTION, page_size=page), out, {"qdrant": str(store), "mode": "local"}
    )
    done = time.perf_counter()
    return {
        "points": manifest["counts"]["points_read"],
        "open_s": marks["opened"] - marks["open_start"],
        "work_s": done - marks["opened"],
        "startup_s": marks["open_start"] - started,
        "counts": manifest["counts"],
        "near_duplicates": {k: v for k, v in manifest["near_duplicates"].items() if k != "moved"},
        **_maxrss(),
    }


# --------------------------------------------------------------------------- the parent


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return found


def tree_rss(pid: int) -> int:
    """Sum of VmRSS (bytes) of ``pid`` and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
        todo += _children(p)
    return total


def measure(argv: list[str], cwd: Path | None = None) -> dict:
    """Run ``argv``; wall time, peak tree RSS, and the JSON it printed last (if any)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss(proc.pid))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{out[-2000:]}\n{err[-3000:]}")
    result = {"wall_s": wall, "tree_rss": peak, "max_rss": None}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if lines:
        result.update(json.loads(lines[-1]))
    return result


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs if r.get(key) is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument(
        "--vectors", action="store_true", help="store 128-d cosine vectors (the near-duplicate search runs)"
    )
    parser.add_argument("--pages", default="4096,16384,32768,65536", help="raw scroll page sizes")
    parser.add_argument("--export-page", type=int, default=None, help="fixed export page (default: its schedule)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=REPO / ".mathpal" / "bench")
    parser.add_argument("--skip-command", action="store_true", help="skip the `python -m mathpal_cli` runs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", choices=["scroll", "export"], help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--page", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--gc-off", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "scroll":
        print(json.dumps(child_scroll(args.store, args.page, args.gc_off)))
        return
    if args.child == "export":
        print(json.dumps(child_export(args.store, args.out, args.page)))
        return

    store = ensure_store(args.cache, args.points, args.vectors)
    me = [sys.executable, str(Path(__file__).resolve())]
    rows: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="bench-prepare-data-"))
    try:
        pages = [int(p) for p in args.pages.split(",")]
        variants = [(page, False) for page in pages] + [(max(pages), True)]
        for page, gc_off in variants:
            runs = [
                measure(
                    [
                        *me,
                        "--child",
                        "scroll",
                        "--store",
                        str(store),
                        "--page",
                        str(page),
                        *(["--gc-off"] if gc_off else []),
                    ]
                )
                for _ in range(args.rounds)
            ]
            what = "raw scroll, GC off" if gc_off else "raw scroll"
            rows.append({"what": what, "page": str(page), "runs": runs})
            print(f"{what} page {page}: {[round(r['open_s'] + r['work_s'], 2) for r in runs]}", flush=True)
        page_arg = ["--page", str(args.export_page)] if args.export_page else []
        runs = [
            measure([*me, "--child", "export", "--store", str(store), "--out", str(work / "data"), *page_arg])
            for _ in range(args.rounds)
        ]
        rows.append({"what": "export (run_export)", "page": str(args.export_page or "schedule"), "runs": runs})
        print(f"export: {[round(r['open_s'] + r['work_s'], 2) for r in runs]}", flush=True)
        counts = runs[-1]["counts"]
        near = runs[-1]["near_duplicates"]
        if not args.skip_command:
            command = [
                sys.executable,
                "-m",
                "mathpal_cli",
                "prepare-data",
                "--qdrant-path",
                str(store),
                "--collection",
                COLLECTION,
                "--out",
                str(work / "cli"),
            ]
            runs = [measure(command, cwd=REPO) for _ in range(args.rounds)]
            rows.append({"what": "`mathpal prepare-data` command", "page": "schedule", "runs": runs})
            print(f"command: {[round(r['wall_s'], 2) for r in runs]}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best_raw = min(
        (median_of(r["runs"], "open_s") + median_of(r["runs"], "work_s"), r["page"])
        for r in rows
        if r["what"] == "raw scroll"
    )
    best_gc_off = min(
        median_of(r["runs"], "open_s") + median_of(r["runs"], "work_s")
        for r in rows
        if r["what"] == "raw scroll, GC off"
    )
    print()
    print(
        f"{args.points:,} points, {'128-d cosine vectors' if args.vectors else 'payload-only'}, local mode; "
        f"median of {args.rounds} rounds; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}"
    )
    print(f"export counts: {json.dumps(counts)}")
    print(f"near-duplicate search: {json.dumps(near)}")
    print()
    print(
        "| run | page | open s | scroll / export s | total s | points/s | × best raw | × raw GC off "
        "| tree RSS MB | max RSS MB | worker MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    table = []
    for row in rows:
        runs = row["runs"]
        if "open_s" in runs[0]:
            open_s, work_s = median_of(runs, "open_s"), median_of(runs, "work_s")
            total = open_s + work_s
            cells = [f"{open_s:.2f}", f"{work_s:.2f}", f"{total:.2f}"]
        else:
            total = median_of(runs, "wall_s")
            cells = ["", "", f"{total:.2f}"]
        rss = max(r["tree_rss"] for r in runs) / 2**20

        def peak(key: str, runs: list[dict] = runs) -> str:
            values = [r[key] for r in runs if r.get(key)]
            return f"{max(values) / 2**20:,.0f}" if values else ""

        worker = peak("worker_max_rss") if row["what"].startswith("export") else ""
        line = (
            f"| {row['what']} | {row['page']} | {' | '.join(cells)} | {args.points / total:,.0f} | "
            f"{total / best_raw[0]:.2f} | {total / best_gc_off:.2f} | {rss:,.0f} | {peak('max_rss')} | {worker} |"
        )
        print(line)
        table.append(
            {
                "run": row["what"],
                "page": row["page"],
                "total_s": total,
                "ratio": total / best_raw[0],
                "tree_rss_mb": rss,
                "runs": runs,
            }
        )
    if args.json:
        args.json.write_text(json.dumps({"points": args.points, "vectors": args.vectors, "rows": table}, indent=2))


if __name__ == "__main__":
    main()
