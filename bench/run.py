#!/usr/bin/env python
"""CPU benchmarks (what `make bench` runs): inference, dataset preprocessing, the demo's memory
and latency, training speed. Each figure has its baseline measured in the same process or on the
same machine. Writes bench/results/cpu_bench.json and prints the tables (markdown).

    .venv/bin/python bench/run.py                      # everything, about 10 minutes on 2 cores
    .venv/bin/python bench/run.py --quick              # small counts, to check that it all works
    .venv/bin/python bench/run.py --only inference demo
    .venv/bin/python bench/tables.py                   # then: BENCHMARKS.md from the JSON files

Areas run with --only replace those areas in the existing JSON and keep the others.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

bl.offline_env()

AREAS = ("dataset", "inference", "demo", "training")  # this order: the dataset's process pool forks before torch threads are busy


def area_fn(name: str):
    if name in ("inference", "dataset"):
        import cpu_inference as m
    elif name == "demo":
        import cpu_demo as m
    else:
        import cpu_training as m
    return getattr(m, name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small counts, for checking (results go to cpu_bench-quick.json)")
    p.add_argument("--only", nargs="+", choices=AREAS, metavar="AREA", help=f"run only these areas: {', '.join(AREAS)}")
    p.add_argument("--data", help="Chinese MNIST zip or folder (default $CHNMNIST_DATA, then ../shared/data/chinese-mnist.zip)")
    p.add_argument("--out", help="JSON to write (default bench/results/cpu_bench.json; with --quick cpu_bench-quick.json)")
    args = p.parse_args(argv)
    out = Path(args.out) if args.out else bl.RESULTS / ("cpu_bench-quick.json" if args.quick else "cpu_bench.json")
    args.data, args.data_note = bl.find_data(args.data)
    if args.data is None:
        print(f"note: {args.data_note}; the dataset-dependent rows (load_dataset, dataset preprocessing, training) are skipped",
              file=sys.stderr)

    results = {"version": 1, "areas": {}}
    if args.only and out.exists():
        try:
            results = json.loads(out.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    import torch

    command = "make bench" if not args.quick and not args.only else \
        ".venv/bin/python bench/run.py" + (" --quick" if args.quick else "")
    for name in args.only or AREAS:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        snap = bl.cpu_snapshot()
        entry = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": bl.machine(), "code": bl.code_version(),
                 "loadavg_before": bl.loadavg(),
                 "quick": args.quick,
                 "command": f".venv/bin/python bench/run.py --only {name}" + (" --quick" if args.quick else ""),
                 "run_as": command}
        try:
            entry.update(area_fn(name)(args))
        except Exception as e:  # one area failing must not lose the others
            entry["error"] = f"{type(e).__name__}: {e}"
            entry["trace"] = traceback.format_exc()[-3000:]
            print(entry["trace"], file=sys.stderr)
        entry["loadavg_after"] = bl.loadavg()
        entry["contention"] = bl.contention(snap, bl.cpu_snapshot())
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        entry["torch_threads"] = torch.get_num_threads()
        results["areas"][name] = entry
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")  # after every area: a crash keeps the rest
        print(f"[bench] {name} done in {entry['seconds']} s", file=sys.stderr, flush=True)

    import tables

    print(tables.render_cpu(results, only=args.only))
    print(f"\n(wrote {out}; BENCHMARKS.md: .venv/bin/python bench/tables.py)", file=sys.stderr)
    return 1 if any("error" in results["areas"].get(n, {}) for n in (args.only or AREAS)) else 0


if __name__ == "__main__":
    sys.exit(main())
