"""The demo as a user meets it: demo/app.py in its own process on 127.0.0.1.

memory: VmHWM/VmRSS of the demo process with both models loaded, after a few /predict calls and
again after the latency runs, against a process that only imports torch and gradio.
latency: /predict through gradio_client with 1 client and with 8 concurrent clients, against the
in-process canonicalize + both models' predict_canonical on the same PNG (the ratio is what HTTP,
the queue and the client cost).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import benchlib as bl

APP = bl.ROOT / "demo" / "app.py"
START_TIMEOUT = 240.0
REQUEST_TIMEOUT = 120.0


def _wait_ready(proc: subprocess.Popen, url: str, timeout: float) -> str | None:
    """None when the server answers; else why not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"demo/app.py exited with status {proc.returncode} before serving"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return None
        except Exception:
            pass
        time.sleep(0.5)
    return f"demo/app.py did not answer at {url} within {timeout:.0f} s"


def _baseline_memory() -> dict:
    """A process that imports torch and gradio and nothing else (the floor for any such demo)."""
    import select

    code = "import torch, gradio, sys; print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    mem: dict = {}
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                if proc.stdout.readline().strip() == "ready":
                    mem = bl.proc_memory(proc.pid)
                break
    finally:
        try:
            proc.stdin.close()
            proc.wait(timeout=30)
        except Exception:
            proc.kill()
            proc.wait(timeout=30)
    return mem


def _timed_predicts(client, png: str, count: int, deadline: float) -> tuple[list[float], list[str]]:
    from gradio_client import handle_file

    times, errors = [], []
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        try:
            # Client.predict is submit().result(); with a timeout, a stuck server cannot hang the benchmark.
            out = client.submit(handle_file(png), api_name="/predict").result(timeout=REQUEST_TIMEOUT)
            if not isinstance(out, dict) or "error" in out or set(out) != {"cnn", "resnet18"}:
                errors.append(f"unexpected answer: {str(out)[:200]}")
        except Exception as e:
            errors.append(f"{type(e).__name__}: {str(e)[:200]}")
        times.append(time.perf_counter() - t0)
    return times, errors


def demo(ctx) -> dict:
    from PIL import Image

    if not APP.exists():
        return {"skipped": "demo/app.py does not exist yet"}
    q = ctx.quick
    per_config = 8 if q else 40
    limit = 60.0 if q else 150.0
    with tempfile.TemporaryDirectory(prefix="chnmnist-bench-demo-") as tmpdir:
        tmp = Path(tmpdir)
        folders, info = bl.model_folders(tmp)
        png = tmp / "sketch.png"
        Image.fromarray(bl.sketch_image()).save(png)

        # Baseline for latency: the same work in this process (what /predict does inside), timed
        # alternately with the 1-client requests below.
        import chnmnist_hub as ch

        models = {k: ch.load_model(f) for k, f in folders.items()}

        def in_process():
            x = ch.canonicalize(str(png))[None]
            for m in models.values():
                m.predict_canonical(x)

        for _ in range(3):
            in_process()

        base_mem = _baseline_memory()
        port = bl.free_port()
        url = f"http://127.0.0.1:{port}/"
        log = open(tmp / "demo.log", "w+")
        proc = subprocess.Popen([sys.executable, str(APP), "--host", "127.0.0.1", "--port", str(port),
                                 "--cnn", str(folders["cnn"]), "--resnet", str(folders["resnet18"])],
                                stdout=log, stderr=subprocess.STDOUT, cwd=str(bl.ROOT))
        result: dict = {"models": info, "image": "the 400x400 RGBA sketch saved as PNG (bench/benchlib.py sketch_image)",
                        "baseline_memory_torch_gradio": base_mem}
        try:
            t0 = time.perf_counter()
            why = _wait_ready(proc, url, START_TIMEOUT)
            if why:
                log.seek(0)
                return {**result, "skipped": why, "log_tail": log.read()[-2000:]}
            result["startup_s"] = round(time.perf_counter() - t0, 2)
            from gradio_client import Client

            client = Client(url, verbose=False, analytics_enabled=False)
            _, warm_errors = _timed_predicts(client, str(png), 3, time.monotonic() + 120)
            result["memory_after_warmup"] = bl.proc_memory(proc.pid)

            times, errors, local = [], [], []
            deadline = time.monotonic() + limit
            for _ in range(per_config):
                if time.monotonic() > deadline:
                    break
                t, e = _timed_predicts(client, str(png), 1, deadline)
                times += t
                errors += e
                t0 = time.perf_counter()
                in_process()
                local.append(time.perf_counter() - t0)
            result["baseline_in_process"] = bl.summarize(local)
            wall1 = sum(times)
            one = {"clients": 1, "requests": len(times), **bl.summarize(times), "errors": len(errors),
                   "requests_per_s": round(len(times) / wall1, 3) if wall1 else None}

            clients = 8
            each = max(1, per_config // clients)
            conns = [Client(url, verbose=False, analytics_enabled=False) for _ in range(clients)]
            got: list[list[float]] = [[] for _ in range(clients)]
            errs: list[list[str]] = [[] for _ in range(clients)]
            deadline = time.monotonic() + limit
            start = threading.Barrier(clients + 1, timeout=60)

            def worker(i):
                start.wait()
                got[i], errs[i] = _timed_predicts(conns[i], str(png), each, deadline)

            threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
            for t in threads:
                t.start()
            start.wait()
            t0 = time.perf_counter()
            for t in threads:
                t.join(timeout=limit + 120)
            wall8 = time.perf_counter() - t0
            all8 = [t for g in got for t in g]
            eight = {"clients": clients, "requests": len(all8), **bl.summarize(all8), "errors": sum(map(len, errs)),
                     "requests_per_s": round(len(all8) / wall8, 3) if wall8 else None}
            result["memory_after_load"] = bl.proc_memory(proc.pid)
            result["latency"] = [one, eight]
            base = result["baseline_in_process"].get("p50_ms")
            result["ratios"] = {
                "http_1_client_p50_vs_in_process_p50": bl.ratio(one.get("p50_ms"), base),
                "http_8_clients_p50_vs_in_process_p50": bl.ratio(eight.get("p50_ms"), base),
                "throughput_8_vs_1": bl.ratio(eight["requests_per_s"], one["requests_per_s"]),
                "demo_peak_vs_torch_gradio_peak": bl.ratio(result["memory_after_load"].get("VmHWM"), base_mem.get("VmHWM")),
            }
            sample_errors = (warm_errors + errors + [e for es in errs for e in es])[:3]
            if sample_errors:
                result["error_samples"] = sample_errors
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
            log.close()
    return result
