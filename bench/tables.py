#!/usr/bin/env python
"""BENCHMARKS.md from bench/results/cpu_bench.json (bench/run.py) and, when present,
bench/results/gpu_bench.json (bench/gpu.py). Only measured figures go in; what was not measured
says so.

    .venv/bin/python bench/tables.py [--cpu JSON] [--gpu JSON] [--out BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GPU_COMMAND = ("bash bench/gpu_session.sh --plan sweep  # with .gpu/chinese-mnist.zip and .gpu/synth_train.npz; "
               "then copy $OUT/gpu_bench.json to bench/results/")


# ---------------------------------------------------------------- formatting

def f(v, digits: int = 1, suffix: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, (int, float)):
        return f"{v:,.{digits}f}{suffix}"
    return str(v)


def x(v) -> str:
    if v is None:
        return "—"
    return f"{v:.2f}×" if v >= 0.1 else f"{v:.2g}×"


def pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(m: dict) -> str:
    if not m:
        return "machine not recorded"
    cores = f"{m.get('cores')} cores" + (f", {m['usable_cores']} usable" if m.get("usable_cores") not in (None, m.get("cores")) else "")
    return (f"{m.get('cpu')} ({cores}; torch uses {m.get('torch_threads')} threads); GPU: {m.get('gpu') or 'none'}; "
            f"torch {m.get('torch')}, Python {m.get('python')}")


def code_line(c: dict) -> str:
    if not c:
        return "not recorded"
    commit = f"commit {c.get('git_commit') or '?'}" + (" with uncommitted changes" if c.get("uncommitted_changes") else "")
    return f"{commit}; chnmnist_hub {c.get('chnmnist_hub', '?')}, preprocessing version {c.get('preprocess_version', '?')}"


def area_header(title: str, a: dict, alternated: bool = True) -> str:
    m = a.get("machine", {})
    out = [f"### {title}", "",
           f"- Machine: {machine_line(m)}",
           f"- Date: {a.get('date', '—')}; the area took {f(a.get('seconds'), 0)} s",
           f"- Code: {code_line(a.get('code') or {})}",
           f"- Reproduce: `make bench` (all areas) or `{a.get('command', '.venv/bin/python bench/run.py')}`"]
    lb, la = a.get("loadavg_before") or [], a.get("loadavg_after") or []
    c = a.get("contention") or {}
    load = f"- Load average (1, 5, 15 min): {'/'.join(map(str, lb)) or '—'} before, {'/'.join(map(str, la)) or '—'} after"
    if c:
        load += (f"; during the area other processes kept {c['other_cores']:.2f} cores busy on average "
                 f"(this benchmark {c['own_cores']:.2f}; hypervisor steal {c['steal_cores']:.2f})")
    out.append(load)
    cores = m.get("usable_cores") or m.get("cores") or 1
    # The load average counts this benchmark too (and lags); /proc/stat minus our own CPU time does not.
    busy = c.get("other_cores", 0) > 0.25 * cores if c else bool(lb and max(lb[0], (la or [0])[0]) > cores + 0.5)
    if busy:
        out.append("- **Other processes were running** on this machine while this area was measured: absolute times are "
                   "inflated and noisy; " + ("the ratios (case and baseline timed alternately) hold up better." if alternated else
                                             "case and baseline ran one after the other, so their ratio is noisy too."))
    if a.get("quick"):
        out.append("- **`--quick` run** (small counts): for checking the benchmark, not for quoting.")
    return "\n".join(out) + "\n"


def models_line(info: dict) -> str:
    if not info:
        return ""
    parts = [f"{k}: {v['source']}" for k, v in info.items()]
    note = "" if all(v.get("trained") for v in info.values()) else \
        " (untrained weights run the same operations, so speed and memory are those of the trained models)"
    return "Models: " + "; ".join(parts) + note + "\n"


def skipped(a: dict) -> str | None:
    if "error" in a:
        return f"**Failed**: {a['error']}\n"
    if "skipped" in a:
        return f"**Not measured**: {a['skipped']}\n"
    return None


# ---------------------------------------------------------------- CPU areas

SINGLE_ROWS = [
    ("cnn_predict", "CNN `model.predict([sketch])` (preprocessing included)"),
    ("resnet_predict", "ResNet-18 `model.predict([sketch])` (preprocessing included)"),
    ("both_predict_canonical", "**Both models, the demo's way**: `canonicalize` once, then each model's `predict_canonical`"),
    ("cnn_predict_canonical", "CNN `predict_canonical` (1×1×64×64, no preprocessing)"),
    ("resnet_predict_canonical", "ResNet-18 `predict_canonical` (1×1×64×64, no preprocessing)"),
    ("canonicalize_sketch", "`canonicalize` alone, 400×400 RGBA sketch"),
    ("canonicalize_scan64", "`canonicalize` alone, 64×64 scan"),
    ("canonicalize_sketch_1_thread", "*For comparison:* `canonicalize` of the sketch with `torch.set_num_threads(1)` around it"),
    ("both_canonicalize_1_thread", "*For comparison:* both models the demo's way, `canonicalize` with 1 torch thread"),
]


def render_inference(a: dict) -> str:
    out = [area_header("Inference, CPU (one process)", a)]
    s = skipped(a)
    if s:
        return "\n".join(out + [s])
    out.append(models_line(a.get("models", {})))
    inp = a.get("inputs", {})
    out.append(f"Inputs: sketch = {inp.get('sketch')}; 64×64 scan = {inp.get('scan64')}; batch = {inp.get('batch')}.\n")
    single, batch, targets = a["single"], a["batch"], a.get("targets", {})
    base = single.get("bare_resnet_forward", {})
    out.append("Baseline in the same process, timed alternately with every row: a bare "
               "`timm.create_model(\"resnet18\", in_chans=1, num_classes=15).eval()` forward under `torch.inference_mode()` "
               f"on {inp.get('bare', 'a (1, 1, 64, 64) tensor')}: p50 {f(base.get('p50_ms'), 2)} ms, p99 {f(base.get('p99_ms'), 2)} ms "
               f"(n = {base.get('n')}).\n")
    b64 = single.get("bare_resnet_forward_64")
    if b64:
        out.append(f"For reference, the same bare forward on the 64×64 canonical tensor: p50 {f(b64.get('p50_ms'), 2)} ms. "
                   + against_64(a) + "\n")
    rows = []
    for key, label in SINGLE_ROWS:
        r = single.get(key, {})
        ratio = r.get("p50_ms") / base["p50_ms"] if r.get("p50_ms") and base.get("p50_ms") else None
        target = ""
        if key == "both_predict_canonical":
            t = targets.get("both_single_vs_bare")
            target = f"≤ {t}× {'✅' if ratio is not None and ratio <= t else '❌'}" if t else ""
        rows.append([label, f(r.get("p50_ms"), 2), f(r.get("p99_ms"), 2), r.get("n", "—"), f(base.get("p50_ms"), 2), x(ratio), target])
    bb, rb = batch.get("bare_resnet_forward_256", {}), batch.get("resnet_predict_canonical_256", {})
    ratio = rb.get("p50_ms") / bb["p50_ms"] if rb.get("p50_ms") and bb.get("p50_ms") else None
    t = targets.get("batch_vs_bare")
    rows.append(["ResNet-18 `predict_canonical`, batch of 256 (baseline: bare forward, batch of 256)", f(rb.get("p50_ms"), 1),
                 f(rb.get("p99_ms"), 1), rb.get("n", "—"), f(bb.get("p50_ms"), 1), x(ratio),
                 f"≤ {t}× {'✅' if ratio is not None and ratio <= t else '❌'}" if t else ""])
    out.append(table(["Row", "p50 ms", "p99 ms", "n", "Baseline p50 ms", "Ratio (p50)", "Target"], rows))
    notes = []
    if a.get("single_stopped_by_time_limit"):
        notes.append("the single-image loop stopped at its time limit before its full count")
    if a.get("batch_stopped_by_time_limit"):
        notes.append("the batch loop stopped at its time limit before its full count")
    if notes:
        out.append("\nNote: " + "; ".join(notes) + ".")
    bd = a.get("both_breakdown", {})
    if bd:
        both = single.get("both_predict_canonical", {}).get("p50_ms")
        out.append(f"\nWhere the demo's one-image time goes (p50 of each part, against the whole, p50 {f(both, 2)} ms):\n")
        names = {"canonicalize_sketch": "`canonicalize` (400×400 sketch)", "cnn_predict_canonical": "CNN `predict_canonical`",
                 "resnet_predict_canonical": "ResNet-18 `predict_canonical`"}
        out.append(table(["Part", "p50 ms", "Share of both"], [[names[k], f(v.get("p50_ms"), 2), pct(v.get("share_of_both"))] for k, v in bd.items()]))
    prof, prof1 = a.get("canonicalize_profile"), a.get("canonicalize_profile_1_thread")
    if prof and "steps" in prof:
        threads = a.get("torch_threads") or a.get("machine", {}).get("torch_threads")
        out.append(f"\n`canonicalize` on the sketch under cProfile ({prof['repeats']} calls; times include the profiler's overhead), "
                   f"by step of `chnmnist_hub/preprocess.py`, with this process's {threads} torch threads"
                   + (" and with one" if prof1 else "") + ":\n")
        head = ["Step", f"ms a call ({threads} threads)", "Share"] + (["ms a call (1 thread)", "Share"] if prof1 else [])
        rows = []
        prof1 = prof1 if prof1 and "steps" in prof1 else None
        for k, v in prof["steps"].items():
            row = [k, f(v["ms"], 2), pct(v["share"])]
            if prof1:
                w = prof1["steps"].get(k, {})
                row += [f(w.get("ms"), 2), pct(w.get("share"))]
            rows.append(row)
        total = ["**total**", f(prof["total_ms"], 2), ""] + ([f(prof1["total_ms"], 2), ""] if prof1 else [])
        out.append(table(head, rows + [total]))
        for p, label in ((prof, f"{threads} threads"), (prof1, "1 thread")):
            if p:
                out.append(f"\nHeaviest single operations, {label} (own time a call): " + ", ".join(
                    f"`{o['op']}` {f(o['ms'], 2)} ms ({pct(o['share'])})" for o in p["top_ops"][:6]) + ".")
    return "\n".join(out) + "\n"


def render_dataset(a: dict) -> str:
    out = [area_header("Dataset loading and preprocessing, CPU", a, alternated=False)]
    s = skipped(a)
    if s:
        return "\n".join(out + [s])
    cd = a["canonicalize_dataset"]
    rows = [
        [f"`load_dataset` on the zip ({a['images']:,} images)", f(a["load_dataset_s"], 2),
         a.get("raw_decode_what") or "—", f(a.get("raw_decode_s"), 2), x(a.get("load_vs_raw"))],
        [f"`canonicalize_dataset`, no cache ({cd['images']:,} images, {cd['workers']} worker processes)", f(cd["uncached_s"], 2),
         f"the same in one process with one torch thread, as each worker runs, one image after another ({cd['serial_sample']} images "
         f"at {f(cd['serial_ms_per_image'], 2)} ms, scaled to {cd['images']:,})", f(cd["serial_extrapolated_s"], 2),
         x(cd.get("uncached_vs_serial"))],
        [f"`canonicalize_dataset`, cache hit (same {cd['images']:,} images)", f(cd["cached_s"], 3),
         "the uncached run above", f(cd["uncached_s"], 2), x(cd.get("cached_vs_uncached"))],
    ]
    out.append(table(["Row", "Seconds", "Baseline (same process)", "Baseline s", "Ratio"], rows))
    out.append("\nThe cache is `$CHNMNIST_CACHE`, pointed at an empty temporary folder for these rows.")
    if cd.get("serial_ms_per_image_default_threads") is not None and cd.get("serial_default_threads", 1) > 1:
        out.append(f"The same serial sample with this process's default {cd['serial_default_threads']} torch threads: "
                   f"{f(cd['serial_ms_per_image_default_threads'], 2)} ms an image "
                   f"({x(cd['serial_ms_per_image_default_threads'] / cd['serial_ms_per_image'] if cd['serial_ms_per_image'] else None)} "
                   "the one-thread time).")
    return "\n".join(out) + "\n"


def render_demo(a: dict) -> str:
    out = [area_header("Demo (`demo/app.py` on 127.0.0.1): memory and `/predict` latency", a)]
    s = skipped(a)
    if s:
        return "\n".join(out + [s])
    out.append(models_line(a.get("models", {})))
    base_mem = a.get("baseline_memory_torch_gradio", {})
    rows = []
    for key, label in (("memory_after_warmup", "demo, both models loaded, after 3 `/predict` calls"),
                       ("memory_after_load", "demo, after the latency runs (1 and 8 clients)")):
        m = a.get(key, {})
        r = m.get("VmHWM") / base_mem["VmHWM"] if m.get("VmHWM") and base_mem.get("VmHWM") else None
        rows.append([label, f(m.get("VmHWM")), f(m.get("VmRSS")), f(base_mem.get("VmHWM")), f(base_mem.get("VmRSS")), x(r)])
    out.append("Memory, from `/proc/PID/status`; baseline: a process that only runs `import torch, gradio`:\n")
    out.append(table(["Process", "Peak VmHWM MiB", "VmRSS MiB", "Baseline VmHWM MiB", "Baseline VmRSS MiB", "Ratio (peak)"], rows))
    base = a.get("baseline_in_process", {})
    out.append(f"\n`/predict` latency through `gradio_client`: `Client(url).predict(handle_file(png), api_name=\"/predict\")`, "
               f"called as `submit(...).result(timeout=120)`, which is what `predict` does (each client thread its own `Client`); startup to first answer {f(a.get('startup_s'), 1)} s. Baseline, in the "
               f"benchmark's process, timed alternately with the 1-client requests: `canonicalize(png)` + both models' `predict_canonical`, p50 {f(base.get('p50_ms'), 2)} ms, "
               f"p99 {f(base.get('p99_ms'), 2)} ms (n = {base.get('n')}).\n")
    rows = []
    for lat in a.get("latency", []):
        r = lat.get("p50_ms") / base["p50_ms"] if lat.get("p50_ms") and base.get("p50_ms") else None
        rows.append([f"{lat['clients']} client{'s' if lat['clients'] > 1 else ''} (concurrent)" if lat["clients"] > 1 else "1 client",
                     lat.get("requests"), lat.get("errors"), f(lat.get("p50_ms"), 1), f(lat.get("p99_ms"), 1), f(lat.get("requests_per_s"), 2),
                     f(base.get("p50_ms"), 2), x(r)])
    out.append(table(["Clients", "Requests", "Errors", "p50 ms", "p99 ms", "Requests/s", "Baseline p50 ms", "Ratio (p50): HTTP + queue cost"], rows))
    tr = (a.get("ratios") or {}).get("throughput_8_vs_1")
    if tr is not None:
        out.append(f"\nThroughput with 8 concurrent clients against 1 client: {x(tr)}.")
    if a.get("error_samples"):
        out.append("\nErrors seen: " + "; ".join(f"`{e}`" for e in a["error_samples"]))
    return "\n".join(out) + "\n"


def busy_cores(r: dict) -> str:
    c = r.get("contention") or {}
    return f"{c['other_cores']:.2f}" if "other_cores" in c else "—"


def render_training(a: dict) -> str:
    out = [area_header("Training, CPU (`train.py`, one process per run)", a, alternated=False)]
    s = skipped(a)
    if s:
        return "\n".join(out + [s])
    runs = a.get("runs", {})
    if a.get("data"):
        out.append(f"Data: {a['data']}.\n")
    out.append(a.get("note", "") + ". Throughput is the warm epoch's; `train.py` is given a one-image sketch set "
               "(its final sketch-set scoring is not what is timed). \"Other processes' cores\": how many cores processes "
               "outside the benchmark kept busy, on average, during that run.\n")
    rows = []
    for model in ("cnn", "resnet18"):
        ours, seed = runs.get(f"ours-{model}", {}), runs.get(f"seed-{model}", {})
        for r, is_base in ((ours, False), (seed, True)):
            if not r:
                continue
            if "error" in r:
                rows.append([r["name"], "—", "—", "—", "—", "—", "—", "—", "—", f"failed: {r['error'][:120]}"])
                continue
            base_ips = seed.get("steady_images_per_second")
            rows.append([f"{model}, {'our recipe' if not is_base else 'report recipe (`--recipe seed`)'}", busy_cores(r),
                         r.get("batch_size"), "yes" if r.get("augment") else "no", f"{r.get('subset'):,}",
                         f(r.get("steady_images_per_second"), 1), f(r.get("epoch_s_extrapolated"), 1),
                         f"{r.get('release_epochs')} → {f(r.get('release_training_s_projected'), 0)} s "
                         f"({f((r.get('release_training_s_projected') or 0) / 60, 1)} min)" if r.get("release_training_s_projected") else "—",
                         "baseline" if is_base else f(base_ips, 1),
                         "—" if is_base else x(r["steady_images_per_second"] / base_ips if base_ips and r.get("steady_images_per_second") else None)])
    out.append(table(["Model, recipe", "Other processes' cores", "Batch", "Augment", "Subset", "Images/s", "s/epoch (12,750 images, extrapolated)",
                      "Recipe's epochs → projected training", "Baseline: report recipe images/s", "Ratio"], rows))
    t1, t2 = runs.get("torchrun-1", {}), runs.get("torchrun-2", {})
    if t1 or t2:
        out.append("\nData-parallel on this CPU: `torchrun` with 1 and 2 gloo processes, CNN, our recipe; images/s as `train.py` "
                   "writes it to metrics.json (the whole epoch, first step included). torchrun sets OMP_NUM_THREADS=1 per process "
                   "when it starts more than one, so 1 process uses all cores with intra-op threads and 2 processes use one each.\n")
        rows = []
        base = t1.get("images_per_second")
        for r in (t1, t2):
            if not r:
                continue
            if "error" in r:
                rows.append([r["name"], "—", "—", "—", "—", f"failed: {r['error'][:120]}"])
                continue
            rows.append([f"{r['world_size']} process{'es' if r['world_size'] > 1 else ''}", busy_cores(r), f"{r['subset']:,}", f(r.get("images_per_second"), 1),
                         f(base, 1), "baseline" if r is t1 else x(r["images_per_second"] / base if base else None)])
        out.append(table(["torchrun", "Other processes' cores", "Subset (1 epoch)", "Images/s", "Baseline: 1 process images/s", "Ratio"], rows))
    if a.get("skipped_runs"):
        out.append("\nNot run: " + "; ".join(a["skipped_runs"]))
    cmds = [f"- {r['name']}: `{r['command']}`" for r in runs.values() if r.get("command")]
    if cmds:
        out.append("\nThe runs (OUT a temporary folder):\n\n" + "\n".join(cmds))
    return "\n".join(out) + "\n"


RENDER = {"dataset": render_dataset, "inference": render_inference, "demo": render_demo, "training": render_training}
ORDER = ("inference", "dataset", "demo", "training")


def render_cpu(results: dict, only=None) -> str:
    areas = results.get("areas", {})
    parts = []
    for name in ORDER:
        if only and name not in only:
            continue
        if name in areas:
            parts.append(RENDER[name](areas[name]))
        else:
            parts.append(f"### {name.capitalize()}\n\nNot measured yet: `.venv/bin/python bench/run.py --only {name}`.\n")
    return "\n".join(parts)


def summary(results: dict) -> str:
    inf = results.get("areas", {}).get("inference", {})
    r, t = inf.get("ratios") or {}, inf.get("targets") or {}
    if not r:
        return ""
    lines = ["Inference targets (CPU, p50 against the bare timm ResNet-18 forward in the same process):", ""]
    for key, what in (("both_single_vs_bare", "both models on one drawn image, preprocessing included, against one bare forward"),
                      ("batch_vs_bare", "ResNet-18 `predict_canonical` on 256 images against the bare batch forward")):
        if r.get(key) is not None and key in t:
            lines.append(f"- {what}: **{x(r[key])}** (target ≤ {t[key]}×: {'met' if r[key] <= t[key] else 'not met'})")
    if "both_single_vs_bare_64" in r:
        lines += ["", against_64(inf)]
    return "\n".join(lines) + "\n"


def against_64(inf: dict) -> str:
    """The inference ratios against a 64-px bare forward, for a bundled ResNet-18 that enlarges its input."""
    r, size = inf.get("ratios") or {}, inf.get("bare_input_size")
    return (f"The bare forward is on the {size}×{size} input the bundled ResNet-18's network sees (it enlarges the "
            f"64×64 canonical image). Against a bare forward on the 64×64 image instead: one drawing "
            f"{x(r.get('both_single_vs_bare_64'))}, the batch of 256 {x(r.get('batch_vs_bare_64'))}.")


# ---------------------------------------------------------------- GPU (bench/gpu.py)

def _run_by_name(gpu: dict) -> dict:
    return {r["name"]: r for r in gpu.get("runs", []) if "name" in r}


def _time_to(r: dict, key: str) -> str:
    tt = r.get("time_to") or {}
    if key not in tt:
        return "—"
    if tt[key] is None:
        return f"not reached ({f(r.get('train_seconds'), 1)} s, {r.get('epochs_run')} epochs)"
    return f"{tt[key]:.1f} s"


def render_gpu(gpu: dict | None, source: str = "", others: list | None = None) -> str:
    others = others or []
    out = ["## GPU (`bench/gpu.py`)", ""]
    if not gpu:
        out.append(f"Not measured yet. On a machine with a GPU: `{GPU_COMMAND}`, then `.venv/bin/python bench/tables.py`.\n")
        return "\n".join(out)
    m = gpu.get("machine", {})
    out.append(f"- Machine: GPU {m.get('gpu') or 'none (a CPU dry run: not GPU figures)'}; CPU {m.get('cpu')}, {m.get('cores')} cores; "
               f"torch {m.get('torch')}, Python {m.get('python')}")
    out.append(f"- Date: {m.get('date', '—')}")
    out.append(f"- Reproduce: `{GPU_COMMAND}` (groups alone: `--only release random seed ddp variants`)")
    if source:
        out.append(f"- Source: `{source}`")
    out.append("")
    runs = _run_by_name(gpu)

    def err(r):
        return f"failed: {(r.get('error') or r.get('stderr_tail') or '')[-150:]}" if ("error" in r or r.get("returncode") not in (None, 0)) else None

    # Our recipe against the report's, random split, test accuracy logged every epoch; each pair
    # comes from one command on one GPU (the sweep plan, else another plan's file).
    out.append("### Our recipe against the report's (`--recipe seed`), random split, same command and GPU\n")
    rows = []
    for model in ("cnn", "resnet18"):
        for source_name, source in [("sweep", gpu)] + [(o.get("plan"), o) for o in others]:
            rs = _run_by_name(source)
            seed = rs.get(f"seed-{model}")
            ours = next((r for n, r in rs.items() if n.startswith(f"random-{model}") and not err(r)), None)
            if not seed or err(seed) or not ours:
                continue
            base = seed.get("images_per_second")
            for r, label in ((ours, f"our recipe ({ours['name']})"), (seed, "report recipe (`--recipe seed`)")):
                rows.append([model, label, f"`--plan {source.get('plan', source_name)}`", f"{r['batch_size']}" if r.get("batch_size") else "—",
                             pct(r.get("test_accuracy")), _time_to(r, "0.990"), _time_to(r, "0.996") if model == "resnet18" else "—",
                             f(r.get("images_per_second"), 0), "baseline" if r is seed else f(base, 0),
                             "—" if r is seed else x(r["images_per_second"] / base if base else None)])
            break
    out.append(table(["Model", "Recipe", "Run", "Batch", "Test accuracy", "Time to 99.0% test", "Time to 99.6% test", "Images/s",
                      "Baseline: report recipe images/s", "Ratio"], rows) if rows else "Not measured yet (groups random, seed).")
    out.append("\nCommands: `python train.py --model M --split random --track-test` (ours); "
               "`python train.py --model M --split random --recipe seed --epochs 1000 --time-limit 30 --track-test` (report's, CNN; "
               "ResNet `--epochs 100`). Time to accuracy: training seconds until the test accuracy logged after an epoch first reached it. "
               "`random-resnet18-128` enlarges the canonical image to 128 px before the ResNet (`--input-size 128`).\n")

    out.append("### Release candidates (writer split: writers 91-100 never seen in training), preprocessing v1\n")
    report = {"cnn": 0.943, "resnet18": 0.992}
    bundled = set()  # released until preprocessing version 4; the bundled models are in their own section
    rows = []
    for name, r in runs.items():
        if r.get("group") != "release":
            continue
        e = err(r)
        if e:
            rows.append([name] + ["—"] * 7 + [e])
            continue
        rows.append([name + (" (bundled)" if name in bundled else ""), pct(r.get("val_accuracy")), pct(r.get("test_accuracy")),
                     pct(r.get("sketch_accuracy")), pct(report[r["model"]]), f(r.get("train_seconds"), 1), r.get("epochs_run"),
                     f(r.get("images_per_second"), 0)])
    out.append(table(["Run", "Validation writers 86-90", "Test accuracy (writer split)", "Sketch-set accuracy (preprocessing v1)",
                      "Baseline: the report's test accuracy (random split)", "Training s", "Epochs", "Images/s"], rows)
               if rows else "Not measured yet (group release).")
    out.append("\nThe sketch-set column is with the preprocessing of the time (v1). `release-*-synth` were the bundled models "
               "until preprocessing version 4 (faint strokes kept), which changed the training inputs; the models trained "
               "with it are in the section on the bundled models. `-synth`: with `--extra-train` synthetic font images; "
               "`-long`: 60 (CNN) or 40 (ResNet) epochs.\n")

    out.append("### DDP overhead: `torchrun --nproc_per_node=1` against a plain process (ResNet-18, random split, 6 epochs)\n")
    plain, tr1 = runs.get("ddp-plain"), runs.get("ddp-torchrun-1")
    rows = []
    for r, label in ((plain, "plain `python train.py`"), (tr1, "`torchrun --standalone --nproc_per_node=1 train.py`")):
        if not r:
            continue
        e = err(r)
        if e:
            rows.append([label, "—", "—", "—", e])
            continue
        base = plain.get("images_per_second") if plain and not err(plain) else None
        rows.append([label, f(r.get("images_per_second"), 0), f(r.get("train_seconds"), 1), "baseline" if r is plain else f(base, 0),
                     "—" if r is plain else x(r["images_per_second"] / base if base else None)])
    out.append(table(["Launcher", "Images/s", "Training s", "Baseline: plain images/s", "Ratio"], rows) if rows else "Not measured yet (group ddp).")

    out.append("\n### CNN variants (writer split, our recipe); baseline: the GPU release candidate CNN (32/64 filters, pooling, batch norm)\n")
    base = runs.get("release-cnn") if runs.get("release-cnn") and not err(runs["release-cnn"]) else None
    rows = []
    if base:
        rows.append(["32-64, pool, batch norm (release candidate)", pct(base.get("test_accuracy")), "baseline", pct(base.get("sketch_accuracy")),
                     "baseline", f(base.get("images_per_second"), 0)])
    for name, r in runs.items():
        if r.get("group") != "variants":
            continue
        e = err(r)
        label = name.removeprefix("cnn-").replace("-pool", ", pool").replace("-nopool", ", no pool").replace("-bn", ", batch norm").replace("-nobn", ", no batch norm")
        if e:
            rows.append([label, "—", "—", "—", "—", e])
            continue
        d = lambda k: (f"{100 * (r[k] - base[k]):+.1f} pts" if base and r.get(k) is not None and base.get(k) is not None else "—")
        rows.append([label, pct(r.get("test_accuracy")), d("test_accuracy"), pct(r.get("sketch_accuracy")), d("sketch_accuracy"),
                     f(r.get("images_per_second"), 0)])
    out.append(table(["Filters, pooling, batch norm", "Test accuracy", "vs candidate", "Sketch-set accuracy", "vs candidate", "Images/s"], rows)
               if len(rows) > (1 if base else 0) else "Not measured yet (group variants).")
    out.append("\nCommand: `python train.py --model cnn --split writer --filters A B [--no-pool] [--no-batchnorm]`.\n")
    return "\n".join(out)


def render_cnn_variants(data: dict | None, source: str) -> str:
    """The CNN variants trained the same short way on a CPU (bench/cnn_variants.py)."""
    if not data:
        return ""
    m = data.get("machine", {})
    out = [f"## CNN variants, CPU (`bench/cnn_variants.py`): {data['subset']} training images, {data['epochs']} epochs, lr {data.get('lr')}", "",
           f"- Machine: {m.get('cpu')}, {m.get('cores')} cores; date {m.get('date')}; load average at the end "
           f"{'/'.join(f'{v:.1f}' for v in m.get('load', []))}", f"- Source: `{source}`; baseline: the default (16/32 filters, pooling, batch norm, chosen by this table)", ""]
    from chnmnist_hub.models import CNN_DEFAULTS

    base = next((r for r in data["runs"] if r["filters"] == CNN_DEFAULTS["filters"] and r["pool"] == CNN_DEFAULTS["pool"]
                 and r["batchnorm"] == CNN_DEFAULTS["batchnorm"] and "error" not in r), None)
    rows = []
    for r in data["runs"]:
        if "error" in r:
            rows.append([r["variant"], "—", "—", "—", "—", r["error"][:80]])
            continue
        d = lambda k: "baseline" if r is base else (f"{100 * (r[k] - base[k]):+.1f} pts" if base and r.get(k) is not None else "—")
        rows.append([r["variant"], pct(r.get("val_accuracy")), pct(r.get("test_accuracy")), d("test_accuracy"),
                     pct(r.get("sketch_accuracy")), f(r.get("images_per_second"), 0)])
    out.append(table(["Variant", "Validation writers", "Test writers", "Test vs default", "Sketch set", "Images/s"], rows))
    out.append(f"\nCommand of each row: `{data['runs'][0]['command'].split(' --filters')[0]} --filters A B [--no-pool] [--no-batchnorm]`.\n")
    return "\n".join(out) + "\n"


def render_gpu_other(gpu: dict | None, source: str) -> str:
    """Runs of another plan or preprocessing version, listed whole (none of them was released)."""
    if not gpu:
        return ""
    m = gpu.get("machine", {})
    out = [f"### Other GPU runs: `--plan {gpu.get('plan')}`, preprocessing version {gpu.get('preprocess_version')} ({m.get('gpu')}, {m.get('date')})", "",
           f"Source: `{source}`. Version 2 removed specks and shadows on every image, scans included; it cost "
           "0.2-0.6 points on the test writers and was replaced by version 3, which is version 1 on scans and "
           "sketchpads. None of these runs was released.", ""]
    rows = []
    for r in gpu.get("runs", []):
        if "error" in r:
            rows.append([r["name"], "—", "—", "—", "—", "—", r["error"][:80]])
            continue
        rows.append([r["name"], r.get("split", "—"), pct(r.get("test_accuracy")), pct(r.get("sketch_accuracy")),
                     f(r.get("train_seconds"), 1), f(r.get("images_per_second"), 0), r.get("epochs_run")])
    out.append(table(["Run", "Split", "Test accuracy", "Sketch-set accuracy", "Training s", "Images/s", "Epochs"], rows))
    return "\n".join(out) + "\n"


def _bundled(folder: Path) -> tuple[dict, dict]:
    """A released model folder's metrics.json ({} when absent) and config.json's `chnmnist` part."""
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
    return metrics, json.loads((folder / "config.json").read_text())["chnmnist"]


def render_release() -> str:
    """The bundled models as they are in models/: what tools/release.py measured and wrote there."""
    from chnmnist_hub.labels import LABELS

    def twin_note(m: dict, ours: dict) -> str:
        v = m.get("random_split_preprocess_version")
        return f" (twin on v{v} inputs)" if v not in (None, ours["preprocess"]["version"]) else ""

    rows = []
    for folder in sorted((ROOT / "models").glob("chnmnist-*")):
        if not (folder / "metrics.json").exists():
            continue
        m, ours = _bundled(folder)
        per = m.get("per_class_accuracy") or []
        weakest = ", ".join(f"{LABELS[i].character} {pct(per[i])}" for i in sorted(range(len(per)), key=per.__getitem__)[:3])
        views = len((ours.get("tta") or {}).get("angles") or [0])
        rows.append([folder.name, ours["preprocess"]["version"], m.get("device", "—"), m.get("epochs_run"), f(m.get("train_seconds"), 0),
                     pct2(m.get("test_accuracy")), pct2(m.get("sketch_accuracy")), views, pct2(m.get("random_split_accuracy")) + twin_note(m, ours), weakest])
    if not rows:
        return ""
    return "\n".join(["## Bundled release models (`models/`)", "",
                      "Measured by `tools/release.py` through the code paths of `python -m chnmnist_hub evaluate`; "
                      "re-checked in CI by `tests/test_release.py`. Writer split: writers 91-100, never seen in training. "
                      "Random split: a twin trained with the same command on the random split, scored on its own test part. "
                      "Baseline: the report's 94.3% (CNN) and 99.2% (ResNet-18) on a random split.", "",
                      table(["Model", "Preprocessing", "Trained on", "Epochs", "Training s", "Writer test", "Sketch set",
                             "Test-time views", "Random-split twin", "Weakest classes (writer test)"], rows), ""])


def render_small_writing() -> str:
    """How the bundled models read small writing: tools/val_views.py on their validation writers."""
    rows, factors = [], []
    for path in sorted(RESULTS.glob("val_views-*.json")):
        r = json.loads(path.read_text())
        shrunk = r.get("written_smaller")
        if not shrunk:
            continue
        factors = factors or list(shrunk)
        one = r["sets"]["one view"]
        rows.append([r["model"], f"{one['errors']} of {one['n']}"] + [f"{shrunk[k]['errors']} ({shrunk[k]['blank']} blank)" for k in factors])
    if not rows:
        return ""
    return "\n".join(["## Small writing (validation writers 86-90, `tools/val_views.py`)", "",
                      "Errors when each validation character is shrunk before canonicalisation, as small or distant "
                      "writing reaches the model; a character shrunk to nothing counts as blank and wrong. "
                      "Validation images only, never the test.", "",
                      table(["Model", "Full size"] + [f"Shrunk to {k}" for k in factors], rows), ""])


def why_missed(cpu: dict) -> list[str]:
    """Where the one-image budget goes, and what the released ResNet's test-time views (if any) cost,
    from the measured figures."""
    folder = ROOT / "models" / "chnmnist-resnet18"
    if not (folder / "config.json").exists():
        return []
    metrics, ours = _bundled(folder)
    angles = (ours.get("tta") or {}).get("angles", [])
    inf = cpu.get("areas", {}).get("inference", {})
    single, ratios = inf.get("single") or {}, inf.get("ratios") or {}
    bare = (single.get("bare_resnet_forward") or {}).get("p50_ms")
    if not bare:
        return []
    part = lambda k: (single.get(k) or {}).get("p50_ms", float("nan")) / bare
    parts = (f"its single-image `predict_canonical` is {x(ratios.get('resnet_predict_canonical_vs_bare'))}, "
             f"`canonicalize` adds {part('canonicalize_sketch'):.2f}× and the CNN {part('cnn_predict_canonical'):.2f}×.")
    if len(angles) < 2:
        return [f"Where the one-image time goes: the released ResNet-18 runs one view per image; {parts}", ""]
    gain = (f", which lifts its sketch-set accuracy from {pct2(metrics['sketch_accuracy_one_view'])} to {pct2(metrics['sketch_accuracy'])}"
            if "sketch_accuracy_one_view" in metrics else "")
    return [f"Why they are missed: the released ResNet-18 averages {len(angles)} test-time views (rotations "
            f"{', '.join(f'{a:g}°' for a in angles)}, config `chnmnist.tta`), batched into one forward pass{gain}; "
            f"they cost about that many times the work, and its batch of 256 is really {256 * len(angles)} images: {parts}", ""]


def pct2(v) -> str:  # release targets are set to a tenth of a point
    return "—" if v is None else f"{100 * v:.2f}%"


def _rel(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def render_markdown(cpu: dict | None, gpu: dict | None, cpu_source: str, gpu_source: str) -> str:
    out = ["# Benchmarks", "",
           f"Generated by `bench/tables.py` from `{_rel(cpu_source)}` (`make bench`) and `{_rel(gpu_source)}` "
           f"(`bench/gpu.py`) on {time.strftime('%Y-%m-%d')}. Every speed is a ratio against a baseline measured in the same "
           "process or on the same machine; absolute times belong to the machine named above each table.", ""]
    if cpu:
        s = summary(cpu)
        if s:
            out += [s]
        out += why_missed(cpu)
        out += ["## CPU (`make bench`)", "", render_cpu(cpu)]
    else:
        out += ["## CPU (`make bench`)", "", "Not measured yet: `make bench`.", ""]
    out.append(render_release())
    out.append(render_small_writing())
    other = RESULTS / "gpu_bench_final_v2.json"
    others = [json.loads(other.read_text())] if other.exists() else []
    out.append(render_gpu(gpu, _rel(gpu_source) if gpu else "", others))
    if others:
        out.append(render_gpu_other(others[0], _rel(str(other))))
    variants = RESULTS / "cnn_variants_cpu.json"
    if variants.exists():
        out.append(render_cnn_variants(json.loads(variants.read_text()), _rel(str(variants))))
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", default=str(RESULTS / "cpu_bench.json"))
    p.add_argument("--gpu", default=str(RESULTS / "gpu_bench.json"))
    p.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"), help="'-' for stdout")
    args = p.parse_args(argv)
    load = lambda path: json.loads(Path(path).read_text()) if Path(path).exists() else None
    cpu, gpu = load(args.cpu), load(args.gpu)
    if cpu and any(a.get("quick") for a in cpu.get("areas", {}).values()) and args.out != "-":
        print(f"warning: {args.cpu} holds --quick results", file=sys.stderr)
    text = render_markdown(cpu, gpu, args.cpu, args.gpu)
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
