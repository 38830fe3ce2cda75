"""``python -m benchmarks``: run every case of a preset, print the tables, write JSON and Markdown."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from .presets import PRESETS, Preset, default_preset
from .report import fragments, summary

RESULTS = Path(__file__).parent / "results"


def machine(device: torch.device) -> dict:
    """What the numbers were measured on, in words (no host names or paths)."""
    from importlib.metadata import version

    from ddpm_utils.run import describe_device

    try:
        with open("/proc/meminfo") as f:
            memory_gib = int(f.readline().split()[1]) / 2**20
    except OSError:
        memory_gib = float("nan")
    from ddpm_utils.precision import candidates, cpu_has_native_bf16

    return {
        "device": describe_device(device),
        "bf16_instructions": cpu_has_native_bf16(),  # AVX512-BF16 or AMX: needed for fast bf16, not sufficient
        "precision_candidates": list(candidates(device)),
        "cpu_count": os.cpu_count(),
        "memory_gib": memory_gib,
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": version("diffusers"),
    }


def source_commit() -> str:
    """The git commit the benchmark's code came from, with "+ changes" when the checkout differs from it."""
    root = Path(__file__).parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              cwd=root, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=root, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" + uncommitted changes" if dirty else "")


def _run_isolated(name: str, preset: Preset, workdir: Path) -> dict:
    """One case in a fresh interpreter; its last line is ``RESULT {json}``."""
    cmd = [sys.executable, "-m", "benchmarks.cases", name, "--preset", preset.name, "--workdir", str(workdir)]
    # torch.compile starts cold, as on a reader's first run: no kernels cached by an earlier case or run.
    caches = workdir / ("compile-cache-" + name.replace("/", "-"))
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(caches / "inductor"), TRITON_CACHE_DIR=str(caches / "triton"))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent.parent, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1][len("RESULT "):])


def run(preset: Preset, out: Path | None, isolate: bool = True, only: list[str] | None = None) -> dict:
    """Run the preset's cases (each in its own process unless ``isolate=False``); return the results."""
    from .cases import case_table, run_case

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    names = [n for n in case_table(preset) if not only or any(n.startswith(prefix) for prefix in only)]
    results = {
        "preset": preset.name,
        "date": datetime.date.today().isoformat(),
        "commit": source_commit(),
        "device_type": device.type,
        "machine": machine(device),
        "config": dataclasses.asdict(preset),
        "variants": [v.name for v in preset.variants],
        "variant_labels": {v.name: v.label for v in preset.variants},
        "recommended": preset.recommended,
        "isolated": isolate,
        "cases": {},
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f"[{time.perf_counter() - start:7.1f} s] {name} …", flush=True)
            if isolate:
                result = _run_isolated(name, preset, Path(tmp))
            else:
                try:
                    result = run_case(name, preset, Path(tmp), device)
                except Exception as error:  # recorded in the table and the exit status, not swallowed
                    traceback.print_exc()
                    result = {"error": f"{type(error).__name__}: {error}"}
            results["cases"][name] = result
            if "error" in result:
                print(f"    failed: {result['error']}", flush=True)
    results["wall_seconds"] = time.perf_counter() - start
    sources = {r["data_source"] for r in results["cases"].values() if "data_source" in r}
    results["data_source"] = "; ".join(sorted(sources)) or "no data loaded"
    results["summary"] = summary(results)
    if out is not None:
        write(results, out)
    return results


def update(results: dict, out: Path, why: str) -> dict:
    """Merge a run of some cases into the committed run at ``out``, on the same machine and software.

    The cases run together replace the old ones as a group (a sampler row and the model it samples
    come from the same run), and the merged results record which cases were re-measured, when and why.
    """
    committed = json.loads((out / "results.json").read_text())
    same = ("device", "bf16_instructions", "cpu_count", "torch", "python")
    if committed["preset"] != results["preset"] or any(committed["machine"].get(k) != results["machine"].get(k)
                                                       for k in same):
        raise SystemExit(f"--update needs the same preset, device and software as {out / 'results.json'}")
    committed["cases"].update(results["cases"])
    committed.setdefault("updates", []).append({"cases": sorted(results["cases"]), "date": results["date"],
                                                "commit": results.get("commit"),
                                                "wall_seconds": results["wall_seconds"], "why": why})
    sources = {r["data_source"] for r in committed["cases"].values() if "data_source" in r}
    committed["data_source"] = "; ".join(sorted(sources)) or "no data loaded"
    committed["summary"] = summary(committed)
    write(committed, out)
    return committed


def write(results: dict, out: Path) -> None:
    """``out/results.json`` and one Markdown file per table (the book's page includes them)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    for name, text in fragments(results).items():
        (out / f"{name}.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="sizes to run (default: full with CUDA, else cpu)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the results (default: results/PRESET)")
    parser.add_argument("--only", nargs="*", help="run only the cases whose names start with these")
    parser.add_argument("--update", metavar="WHY", help="with --only: re-measure those cases and merge them into "
                        "the committed run of this preset, recording WHY (same machine and software only)")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset or default_preset()]
    out = args.out or RESULTS / preset.name
    if args.update and not args.only:
        parser.error("--update needs --only: the cases to re-measure")
    results = run(preset, None if args.update else out, only=args.only)
    if args.update:
        results = update(results, out, args.update)
    for name, text in fragments(results).items():
        print(f"\n## {name}\n\n{text}", end="")
    print(f"\nWrote {out / 'results.json'} and the tables as Markdown beside it.")
    failed = [n for n, r in results["cases"].items() if "error" in r]
    if failed:
        print(f"{len(failed)} case(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
