"""Run the benchmark suite, print a table of rates and ratios, write a JSON file.

    python -m benchmarks.run            # full suite, <= ~10 min on 2 cores
    python -m benchmarks.run --quick    # shorter timings (~4 min), noisier
    python -m benchmarks.run --only env,learner

Sections (all in one run, on this machine):

1. ``env``      raw kitchen env steps/s (random actions)
2. ``env``      skill env wrapper low-level env steps/s (open / closed-loop decoder)
3. ``sampling`` SPiRL EnvRunner sampling, 1 and 2 runners, learner idle (warm-up not reached)
4. ``learner``  updates/s, batch 256: SPiRL vs stock RLlib SAC vs minimal pure-torch SAC
5. ``prior``    skill-prior training samples/s vs forward/backward on preloaded tensors
6. ``memory``   peak RSS with a 1M-transition replay + learner + 2 EnvRunners
7. ``e2e``      SPiRL training after warm-up on the kitchen skill env (1 runner) and the
                projected wall time of the paper budget (1.5M env steps)
8. ``image_learner`` SPiRL learner updates/s on maze / block-stacking images: today's
                forward vs the fused forward and the image-encoder options
                (``benchmarks/bench_image_learner.py``)

Results go to ``benchmarks/results/<timestamp>.json`` (git-ignored); the path is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("env", "prior", "learner", "sampling", "e2e", "memory", "image_learner")


def _git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


# ---- table ---------------------------------------------------------------------------------
def _rows(res: Dict[str, Any]) -> Tuple[List[Tuple[str, str, str]], List[Dict[str, Any]]]:
    """(measurement rows (name, value, unit), ratio rows with floors)."""
    rows: List[Tuple[str, str, str]] = []
    ratios: List[Dict[str, Any]] = []

    def ratio(name: str, value: Optional[float], floor: Optional[float] = None, op: str = ">=", note: str = ""):
        if value is None:
            return
        met = None if floor is None else (value >= floor if op == ">=" else value <= floor if op == "<=" else value < floor)
        ratios.append({"name": name, "value": value, "floor": floor, "op": op, "met": met, "note": note})

    env = res.get("env")
    raw = None
    if env:
        r = env["rates"]
        raw = r["raw_env_random_actions"]["rate"]
        rows.append(("(1) raw kitchen env, random actions", f"{raw:.0f}", "env steps/s"))
        for dec in ("open_loop", "closed_loop"):
            rows.append((f"(2) skill env, {dec} decoder", f"{r[f'skill_env_{dec}']['rate']:.0f}", "env steps/s"))
            rows.append((f"    wrapper overhead ({dec})", f"{100 * env[f'{dec}_overhead_fraction']:.1f}", "% of wall time"))
            ratio(f"skill env {dec} / raw env", env[f"{dec}_ratio_vs_raw"], 0.9)
            ratio(f"skill env {dec}: 1 - wrapper overhead", env[f"{dec}_ratio_overhead_only"], 0.9,
                  note="simulator time excluded")
    smp = res.get("sampling")
    if smp:
        r1, r2 = smp["runners_1"]["env_steps_per_s"], smp["runners_2"]["env_steps_per_s"]
        rows.append(("(3) EnvRunner sampling, 1 runner", f"{r1:.0f}", "env steps/s"))
        rows.append(("(3) EnvRunner sampling, 2 runners", f"{r2:.0f}", "env steps/s"))
        if raw:
            ratio("1 runner / raw env", r1 / raw, 0.8)
        ratio("2 runners / 1 runner", smp["ratio_2_vs_1"], 1.6)
    lrn = res.get("learner")
    if lrn:
        r = lrn["rates"]
        pure, stock = r["pure_torch_sac"]["rate"], r["stock_rllib_sac"]["rate"]
        rows.append((f"(4) pure-torch SAC update ({lrn['torch_threads']} thread)", f"{pure:.1f}", "updates/s"))
        at = lrn["pure_torch_sac_all_threads"]
        rows.append((f"(4) pure-torch SAC update ({at['threads']} threads)", f"{at['rate']:.1f}", "updates/s"))
        rows.append(("(4) stock RLlib SAC update path", f"{stock:.1f}", "updates/s"))
        for k in sorted(int(n.split("K")[1]) for n in r if n.startswith("spirl_K")):
            v = r[f"spirl_K{k}"]["rate"]
            rows.append((f"(4) SPiRL update path, K={k} updates/call", f"{v:.1f}", "updates/s"))
            ratio(f"SPiRL K={k} / pure torch", v / pure, 0.8)
            ratio(f"SPiRL K={k} / stock RLlib SAC", v / stock, 3.0)
        lr = lrn["loop_rates"]
        rows.append(("(4) stock SAC training_step loop, free env", f"{lr['stock_rllib_sac_loop']['rate']:.1f}", "updates/s"))
        rows.append(("(4) SPiRL training_step loop, free env", f"{lr['spirl_loop']['rate']:.1f}", "updates/s"))
    pr = res.get("prior")
    if pr:
        rows.append(("(5) prior training (train_skill_prior, 1 thread)", f"{pr['train_samples_per_s']:.0f}", "samples/s"))
        rows.append(("(5) prior fwd/bwd on preloaded tensors", f"{pr['preloaded_samples_per_s']:.0f}", "samples/s"))
        at = pr["preloaded_all_threads"]
        rows.append((f"    same, {at['threads']} torch threads", f"{at['samples_per_s']:.0f}", "samples/s"))
        ratio("prior data loading / step time", pr["data_time_fraction"], 0.05, "<=")
        ratio("prior training / preloaded", pr["ratio_train_vs_preloaded"])
    mem = res.get("memory")
    if mem:
        rows.append(("(6) peak RSS, 1M replay + learner + 2 runners", f"{mem['peak_gib']:.2f}", "GiB (process tree)"))
        rows.append(("    sum of per-process peaks", f"{mem['sum_of_peaks_gib']:.2f}", "GiB"))
        ratio("peak RSS [GiB]", mem["peak_gib"], 8.0, "<")
    e2e = res.get("e2e")
    if e2e:
        rows.append((f"(7) SPiRL end-to-end, {e2e['num_env_runners']} runner", f"{e2e['env_steps_per_s']:.0f}", "env steps/s"))
        rows.append(("    updates", f"{e2e['updates_per_s']:.1f}", "updates/s"))
        rows.append(("    paper budget (1.5M env steps) projected", f"{e2e['paper_budget_hours']:.1f}", "hours / seed"))
    img = res.get("image_learner")
    if img:
        from benchmarks.bench_image_learner import rows as image_rows

        table, img_ratios = image_rows(img)
        rows.extend(table)
        for name, value, floor in img_ratios:
            ratio(name, value, floor)
    return rows, ratios


def print_table(res: Dict[str, Any]) -> None:
    rows, ratios = _rows(res)
    for name in SECTIONS:
        if name in res and "cpu" in res[name]:
            c = res[name]["cpu"]
            rows.append((f"CPU used by other jobs during '{name}'", f"{c['foreign_cores']:.2f}",
                         f"cores of {res['meta']['cpus']} (niced: {c['niced_cores']:.2f})"))
    w = max([len(r[0]) for r in rows] + [10])
    print("\n" + "=" * (w + 36))
    print(f"{'measurement':<{w}}  {'value':>10}  unit")
    print("-" * (w + 36))
    for name, value, unit in rows:
        print(f"{name:<{w}}  {value:>10}  {unit}")
    print("-" * (w + 36))
    print(f"{'ratio':<{w}}  {'value':>10}  floor")
    print("-" * (w + 36))
    for r in ratios:
        floor = "" if r["floor"] is None else f"{r['op']} {r['floor']:g}  " + ("MET" if r["met"] else "MISSED")
        note = f"  ({r['note']})" if r["note"] else ""
        print(f"{r['name']:<{w}}  {r['value']:>10.3f}  {floor}{note}")
    print("=" * (w + 36))
    res["ratios"] = ratios


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter timings (noisier)")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="directory of the JSON file")
    p.add_argument("--tag", default="", help="suffix of the JSON file name")
    a = p.parse_args(argv)
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        p.error(f"unknown sections {bad}; valid: {SECTIONS}")

    import numpy as np
    import ray
    import torch

    from benchmarks.common import CpuMonitor, loadavg, ray_session, save_skill_model_file

    t_start = time.perf_counter()
    res: Dict[str, Any] = {
        "meta": {
            "started": dt.datetime.now().isoformat(timespec="seconds"),
            "git": _git_rev(),
            "quick": a.quick,
            "cpus": os.cpu_count(),
            "load_avg_1min_start": loadavg(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "ray": ray.__version__,
            "numpy": np.__version__,
            "torch_threads": torch.get_num_threads(),
        }
    }

    def section(name: str, fn):
        if name not in only:
            return
        print(f"[bench] {name} ...", flush=True)
        t = time.perf_counter()
        with CpuMonitor() as cpu:
            res[name] = fn()
        res[name]["wall_s"] = time.perf_counter() - t
        res[name]["cpu"] = cpu.result()
        print(f"[bench] {name} done in {res[name]['wall_s']:.0f} s (other jobs used "
              f"{cpu.result()['foreign_cores']:.2f} cores meanwhile)", flush=True)

    with tempfile.TemporaryDirectory(prefix="spirl_bench_") as tmp:
        model_path = save_skill_model_file(Path(tmp))
        from benchmarks import bench_env, bench_learner, bench_memory, bench_prior, bench_sampling

        section("env", lambda: bench_env.run(a.quick))
        section("prior", lambda: bench_prior.run(a.quick))
        if any(s in only for s in ("learner", "sampling", "e2e")):
            # The driver (local learner) gets one torch thread, as in a Tune trial with 1 CPU,
            # where Ray sets OMP_NUM_THREADS=1; EnvRunners use one thread as well.
            torch.set_num_threads(1)
            with ray_session():
                section("learner", lambda: bench_learner.run(model_path, a.quick))
                section("sampling", lambda: bench_sampling.sampling(model_path, a.quick))
                section("e2e", lambda: bench_sampling.end_to_end(model_path, a.quick))
        section("memory", lambda: bench_memory.run(model_path, a.quick))
        if "image_learner" in only:
            from benchmarks import bench_image_learner

            section("image_learner", lambda: bench_image_learner.run(a.quick))

    res["meta"]["load_avg_1min_end"] = loadavg()
    res["meta"]["wall_s"] = time.perf_counter() - t_start
    print_table(res)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out_dir / f"bench-{stamp}{'-quick' if a.quick else ''}{'-' + a.tag if a.tag else ''}.json"
    path.write_text(json.dumps(res, indent=2, default=float))
    print(f"total {res['meta']['wall_s']:.0f} s; results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
