"""Tables and target checks from a benchmark's results (the dict the runner writes as JSON)."""

from __future__ import annotations

from .presets import CPU_VARIANTS, GPU_VARIANTS

_ALL_VARIANTS = CPU_VARIANTS + GPU_VARIANTS

# Dense bf16 tensor-core peaks (FLOP/s) from NVIDIA's data sheets, matched on the device name.
GPU_BF16_PEAK = (
    ("H100 PCIe", 756e12),
    ("H100", 989.4e12),
    ("H200", 989.4e12),
    ("A100", 312e12),
    ("L4", 121e12),
    ("T4", 65e12),  # fp16: the T4 has no bf16
)

TARGETS = {
    "training": 1.5,  # package step ≥ 1.5× the textbook loop's images/s
    "diffusers": 1.0,  # package UNet at least as fast per step as diffusers' UNet2DModel
    "ddim_speedup": 15.0,  # DDIM-50 ≥ 15× faster than DDPM-1000
    "ddim_frechet": 1.2,  # DDIM-50's Fréchet distance ≤ 1.2 × DDPM-1000's
    "import_seconds": 0.3,  # import ddpm_utils adds < 0.3 s to import torch
    "gpu_seconds": 180.0,  # full preset on a GPU: legible digits in ≤ 3 minutes of training
    "gpu_frechet_over_floor": 3.0,  # "legible": Fréchet distance ≤ 3 × the train-vs-test floor
}


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown pipe table, readable as plain text too; numeric-looking columns right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    numeric = [bool(rows) and all(_numeric(r[i]) for r in rows) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).rjust(w) if n else str(c).ljust(w)
                                           for c, w, n in zip(cells, widths, numeric)) + " |"
    rule = "|" + "|".join(("-" * (w + 1) + ":") if n else ("-" * (w + 2)) for w, n in zip(widths, numeric)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _numeric(cell: str) -> bool:
    text = str(cell).replace(",", "").replace("×", "").replace("%", "").replace("±", " ").split()
    try:
        [float(x) for x in text]
        return bool(text)
    except ValueError:
        return cell in ("—", "")


def _ok(result: dict | None) -> bool:
    return result is not None and "error" not in result and "skipped" not in result


def gpu_peak(device_name: str) -> float | None:
    return next((peak for key, peak in GPU_BF16_PEAK if key in device_name), None)


def summary(results: dict) -> dict:
    """The ratios the issue's targets are about, with whether each is met (None: not measured)."""
    cases, preset = results["cases"], results["preset"]
    rec = results["recommended"]
    textbook, package = cases.get("train/textbook"), cases.get(f"train/{rec}")
    diffusers = cases.get(f"train/diffusers-{rec}")
    diffusers_textbook = cases.get("train/diffusers-textbook")
    ddpm, ddim50 = cases.get("sample/ddpm-1000"), cases.get("sample/ddim-50")
    imports = cases.get("import")
    out = {}
    if _ok(textbook) and _ok(package):
        out["training_speedup"] = package["images_per_s"] / textbook["images_per_s"]
    if _ok(textbook) and _ok(cases.get("train/fp32")):
        out["training_speedup_fp32"] = cases["train/fp32"]["images_per_s"] / textbook["images_per_s"]
    if _ok(diffusers) and _ok(package):
        out["diffusers_same_step"] = diffusers["ms_per_step"] / package["ms_per_step"]
    if _ok(diffusers_textbook) and _ok(package):
        out["diffusers_textbook_loop"] = diffusers_textbook["ms_per_step"] / package["ms_per_step"]
    if _ok(ddpm) and _ok(ddim50):
        out["ddim50_speedup"] = _batch_seconds(ddpm) / _batch_seconds(ddim50)
        out["ddim50_frechet_ratio"] = ddim50["frechet"] / ddpm["frechet"]
    if _ok(imports):
        out["import_seconds"] = imports["ddpm_utils_seconds"]
    goals = {
        "training_speedup": lambda x: x >= TARGETS["training"],
        "diffusers_same_step": lambda x: x >= TARGETS["diffusers"],
        "ddim50_speedup": lambda x: x >= TARGETS["ddim_speedup"],
        "ddim50_frechet_ratio": lambda x: x <= TARGETS["ddim_frechet"],
        "import_seconds": lambda x: x < TARGETS["import_seconds"],
    }
    if results["device_type"] == "cuda" and preset == "full" and _ok(cases.get("sample/train")) and _ok(ddpm):
        out["gpu_train_seconds"] = cases["sample/train"]["seconds"]
        out["gpu_frechet_over_floor"] = min(cases[k]["frechet"] / cases[k]["floor"] for k in cases
                                            if k.startswith("sample/") and k != "sample/train" and _ok(cases[k]))
        goals["gpu_train_seconds"] = lambda x: x <= TARGETS["gpu_seconds"]
        goals["gpu_frechet_over_floor"] = lambda x: x <= TARGETS["gpu_frechet_over_floor"]
    out["met"] = {key: ok(out[key]) if key in out else None for key, ok in goals.items()}
    return out


def _batch_seconds(r: dict) -> float:
    """A sampler row's seconds per batch: the median over its batches (the mean in runs before repeats)."""
    return r.get("median_seconds", r["mean_seconds"])


def _f(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def _mb(result: dict) -> str:
    if result.get("peak_cuda_mb") is not None:
        return f"{result['peak_cuda_mb']:,.0f} (GPU)"
    peak, start = result.get("peak_rss_mb"), result.get("baseline_rss_mb")
    if peak is None:
        return "—"
    return f"{peak:,.0f} (+{peak - start:,.0f})" if start else f"{peak:,.0f}"


def machine_md(results: dict) -> str:
    m, c = results["machine"], results["config"]
    lines = [
        f"- **Device**: {m['device']}"
        + (f"; bf16 instructions (AVX512-BF16 or AMX): {'yes' if m['bf16_instructions'] else 'no'}"
           if "bf16_instructions" in m and results["device_type"] == "cpu" else ""),
        f"- **Machine**: {m['cpu_count']} logical CPUs, {m['memory_gib']:.0f} GiB memory, {m['platform']}",
        f"- **Software**: Python {m['python']}, torch {m['torch']}, diffusers {m['diffusers']}",
        "- **Data**: " + "; ".join(sorted(results["data_source"].split("; "), key=lambda s: ("test split" in s, s))),
        f"- **Timing**: each training row runs {c['warmup_steps']} untimed warm-up steps (and the trial of "
        f"`\"auto\"` where it has more than one candidate), then {c['repeats']} timed windows of {c['timed_steps']} steps; each sampler generates "
        f"{c['sample_batches']} batches of {c['sample_batch']} images",
        f"- **Run**: preset `{results['preset']}`, {results['date']}, {results['wall_seconds'] / 60:.1f} min in all"
        + (f", code at commit {results['commit']}" if results.get("commit") else ""),
    ]
    for u in results.get("updates", []):
        groups = sorted({name.split("/")[0] for name in u["cases"]})
        lines.append(f"- **Re-measured** on {u['date']}, in a second run on the same machine "
                     f"({u['wall_seconds'] / 60:.1f} min{', commit ' + u['commit'] if u.get('commit') else ''}): "
                     f"the {', '.join(groups)} cases ({len(u['cases'])} rows), because {u['why']}")
    return "\n".join(lines)


def _spread(r: dict, key: str = "images_per_s", digits: int = 1) -> str:
    """A row's median with its min–max over the repeats."""
    if f"{key}_min" not in r:
        return _f(r[key], digits)
    return f"{r[key]:,.{digits}f} ({r[key + '_min']:,.{digits}f}–{r[key + '_max']:,.{digits}f})"


def beyond_spread(a: dict, b: dict, key: str = "images_per_s") -> bool | None:
    """Whether two rows' min–max ranges over their repeats are disjoint: a difference larger than the spread."""
    if f"{key}_min" not in a or f"{key}_min" not in b:
        return None
    return a[f"{key}_min"] > b[f"{key}_max"] or b[f"{key}_min"] > a[f"{key}_max"]


def _training_rows(results: dict) -> list[tuple[str, str, dict | None]]:
    """(case name, row label, result) of each training row, in the table's order."""
    cases = results["cases"]
    names = ["train/textbook", "train/textbook-resident", *(f"train/{v}" for v in results["variants"])]
    labels = {"train/textbook": "textbook loop (DataLoader, fp32)",
              "train/textbook-resident": "textbook loop, data in memory",
              **{f"train/{k}": v for k, v in results["variant_labels"].items()},
              **{f"train/{v.name}": v.label for v in _ALL_VARIANTS if v.name in results["variants"]}}  # today's wording
    rows = []
    for name in names:
        r = cases.get(name)
        label = labels[name]
        if _ok(r) and name == "train/auto":
            label += f" → {r['precision']}"
        label += " (default)" if name == f"train/{results['recommended']}" else ""
        rows.append((name, label, r))
    return rows


def _not_run(r: dict | None) -> str:
    return (r or {}).get("skipped") or (r or {}).get("error", "not run")


def training_md(results: dict) -> str:
    """Speed of each training row: images/s with the spread of the windows, against the textbook and fp32."""
    cases, config = results["cases"], results["config"]
    textbook, fp32 = cases.get("train/textbook"), cases.get("train/fp32")
    rows = []
    for name, label, r in _training_rows(results):
        if not _ok(r):
            rows.append([label, "—", "—", _not_run(r)])
            continue
        versus = beyond_spread(r, fp32) if _ok(fp32) and name != "train/fp32" else None
        rows.append([
            label,
            _spread(r),
            f"{r['images_per_s'] / textbook['images_per_s']:.2f}×" if _ok(textbook) else "—",
            "—" if versus is None else ("yes" if versus else "no"),
        ])
    repeats = config.get("repeats", 1)
    header = ["training step", f"images/s, median (min–max of {repeats})", "× textbook", "differs from package, fp32?"]
    return table(header, rows)


def training_cost_md(results: dict) -> str:
    """What each training row costs: time per step, FLOP/s achieved, memory, and its untimed first steps."""
    cases, config = results["cases"], results["config"]
    flops = (cases.get("flops") or {}).get("flops_per_step", {})
    peak = gpu_peak(results["machine"]["device"]) if results["device_type"] == "cuda" else None
    rows = []
    for name, label, r in _training_rows(results):
        if not _ok(r):
            rows.append([label, "—", "—", "—", "—"])
            continue
        achieved = flops.get("package", 0) * r["images_per_s"] / config["batch_size"]
        rows.append([
            label,
            _f(r["ms_per_step"], 0),
            _f(achieved / 1e9, 0) + (f" ({achieved / peak:.1%})" if peak else ""),
            _mb(r),
            _f(r.get("first_steps_seconds"), 1) if "first_steps_seconds" in r else "—",
        ])
    header = ["training step", "ms/step", "GFLOP/s" + (" (of bf16 peak)" if peak else ""),
              "peak MiB (+ over start)", "first steps, s"]
    return table(header, rows)


def diffusers_md(results: dict) -> str:
    cases, rec = results["cases"], results["recommended"]
    rows = []
    for model, key_textbook, key_rec in (("package UNet", "train/textbook", f"train/{rec}"),
                                         ("diffusers UNet2DModel", "train/diffusers-textbook", f"train/diffusers-{rec}")):
        a, b = cases.get(key_textbook), cases.get(key_rec)
        params = next((r["parameters"] for r in (a, b) if _ok(r)), None)
        rows.append([model, f"{params:,}" if params else "—",
                     _f(a["ms_per_step"], 0) if _ok(a) else "—", _f(b["ms_per_step"], 0) if _ok(b) else "—",
                     _mb(b) if _ok(b) else "—"])
    header = ["model (same levels, blocks, attention)", "parameters", "ms/step, textbook loop",
              f"ms/step, package step ({rec})", "peak MiB (+ over start), package step"]
    return table(header, rows)


def _sampler_name(kind: str, steps: int) -> str:
    return {"ddpm": "DDPM", "ddim": "DDIM", "dpmpp_2m": "DPM-Solver++(2M)"}[kind] + f"-{steps}" + (
        " (η = 0)" if kind == "ddim" else "")


def sampling_md(results: dict) -> str:
    cases, config = results["cases"], results["config"]
    ddpm = cases.get("sample/ddpm-1000")
    keys = [(f"sample/{kind}-{steps}", kind, steps) for kind, steps in config["samplers"]]
    keys += [(f"sample/ddim-50@{p}", "ddim", 50) for p in config.get("compared_precisions", ())]
    rows = []
    for key, kind, steps in keys:
        r = cases.get(key)
        name = _sampler_name(kind, steps)
        if not _ok(r):
            rows.append([name, "—", str(steps), "—", "—", "—", _not_run(r)])
            continue
        precision = r.get("precision", "fp32")
        chosen = r.get("chosen", precision)
        shown = f"{precision} → {chosen}" if precision != chosen else precision  # auto, or bf16 run as float32
        spread = (f"{r['median_seconds']:.2f} ({r['min_seconds']:.2f}–{r['max_seconds']:.2f})"
                  if "median_seconds" in r else f"{r['mean_seconds']:.2f} ± {r['std_seconds']:.2f}")
        rows.append([
            name,
            shown,
            str(steps),
            spread,
            _f(r["ms_per_step"], 1),
            f"{_batch_seconds(ddpm) / _batch_seconds(r):.1f}×" if _ok(ddpm) else "—",
            f"{r['frechet']:.1f} ({r['frechet'] / ddpm['frechet']:.2f}×)" if _ok(ddpm) else f"{r['frechet']:.1f}",
        ])
    b, n = config["sample_batch"], config["sample_batches"]
    floors = {f"{cases[k]['floor']:.1f}" for k, _, _ in keys if _ok(cases.get(k))}
    frechet_header = "Fréchet (× DDPM-1000's)" + (f"; real digits {floors.pop()}" if len(floors) == 1 else "")
    header = ["sampler", "precision", "network calls", f"s per {b} images (min–max of {n})", "ms per call",
              "faster than DDPM", frechet_header]
    return table(header, rows)


def quality_md(results: dict) -> str:
    cases, config = results["cases"], results["config"]
    rows = []
    for p in config.get("compared_precisions", ()):
        r = cases.get(f"quality/{p}")
        if not _ok(r):
            rows.append([p, "—", "—", "—", "—", _not_run(r)])
            continue
        rows.append([p, f"{r['steps']:,}", f"{r['seconds']:.0f}", f"{r['final_loss']:.4f} ± {r['final_loss_sd']:.4f}",
                     f"{r['frechet']:.1f}", f"{r['floor']:.1f}"])
    header = ["training precision", "steps", "training s", "loss over the last 10 % of steps (mean ± sd of steps)",
              f"Fréchet, DDIM-50 fp32 ({config.get('quality_images', 0)} images)", "real digits"]
    return table(header, rows)


def profile_md(results: dict) -> str:
    r = results["cases"].get("profile")
    if not _ok(r):
        return "Not profiled: " + (r or {}).get("error", "not run")
    parts = []
    rows = []
    for name, step in r["steps"].items():
        if "skipped" in step:
            rows.append([name, "—", "—", "—", "—", step["skipped"]])
            continue
        rows.append([name, f"{1000 * step['seconds']:,.0f}", f"{step['flops'] / 1e9:,.0f}",
                     f"{step['flops_per_s'] / 1e9:,.0f}", f"{r['ceilings'][step.get('precision', name)] / 1e9:,.0f}",
                     f"{step['share_of_ceiling']:.0%}"])
    parts.append(table(["step", "ms per step (median of 3)", "GFLOP per step", "GFLOP/s",
                        "reference matrix product, GFLOP/s", "share of the reference"], rows))
    sizes = [f"{name} {m['size']}² ({', '.join(f'{n}²: {v / 1e9:,.0f}' for n, v in m['per_size'].items())})"
             for name, m in r.get("matmul", {}).items()]
    emulated = r.get("emulated_bf16")
    if emulated:
        n = emulated["size"]
        parts.append(f"This CPU has no bf16 instructions, so bf16 is emulated: a {n}² bf16 matrix product ran at "
                     f"{emulated['flops_per_s'] / 1e9:,.1f} GFLOP/s against {emulated['fp32_flops_per_s'] / 1e9:,.0f} "
                     f"in float32, and the bf16 steps were not profiled.")
    if not sizes and results["config"].get("matmul_size"):
        n = results["config"]["matmul_size"]
        parts.append(f"The reference is a {n}² matrix product, the only size this run timed.")
    if sizes:
        parts.append("The reference is the fastest of the n × n matrix products timed in the same run, here "
                     + "; ".join(sizes) + " GFLOP/s.")
    for name, step in r["steps"].items():
        if "skipped" in step:
            continue
        top = [[op_name(e["op"]), f"{e['self_ms']:,.1f}", f"{e['share']:.1%}", str(e["calls"])] for e in step["top"]]
        parts.append(f"**{name}**, the ten operators with the most self time in one step of batch {r['batch']}:\n\n"
                     + table(["operator", "self ms", "share of the step", "calls"], top))
    return "\n\n".join(parts)


OP_NAMES = {
    "_scaled_dot_product_flash_attention_for_cpu_backward": "attention backward (flash, CPU)",
    "_scaled_dot_product_flash_attention_for_cpu": "attention (flash, CPU)",
    "_scaled_dot_product_efficient_attention_backward": "attention backward (memory-efficient)",
    "_scaled_dot_product_efficient_attention": "attention (memory-efficient)",
    "_scaled_dot_product_flash_attention_backward": "attention backward (flash)",
    "_scaled_dot_product_flash_attention": "attention (flash)",
    "convolution_backward": "convolution backward",
    "mkldnn_convolution": "convolution (oneDNN)",
    "native_group_norm_backward": "group norm backward",
    "native_group_norm": "group norm",
}


def op_name(key: str) -> str:
    """A profiler operator's name for a table that must fit a phone: without ``aten::``, attention named."""
    name = key.removeprefix("aten::")
    return OP_NAMES.get(name, name)


def sample_model_md(results: dict) -> str:
    r, config = results["cases"].get("sample/train"), results["config"]
    if not _ok(r):
        return "The sampling model was not trained: " + (r or {}).get("error", "not run")
    m = config["sample_model"]
    note = r.get("precision_note") or ""
    chose = f", which {note.replace('precision: ', 'chose ', 1)}" if note else ""
    blocks = m["num_res_blocks"]
    return (f"Sampling model: the package's UNet with {r['parameters']:,} parameters ({m['image_size']}×{m['image_size']} "
            f"images, base {m['base_channels']} channels, channel multipliers {tuple(m['channel_mults'])}, {blocks} "
            f"residual block{'s' if blocks != 1 else ''} per level, {'with' if m['attention'] else 'no'} attention). "
            f"It was trained here for {r['steps']:,} steps of batch {r['batch_size']} in {r['seconds']:.0f} s, to a "
            f"final loss of {r['final_loss']:.4f}, with the `{r['variant']}` step{chose}. Linear schedule, T = 1000; "
            f"samples come from its EMA weights with x̂₀ clipped to [-1, 1]. Each sampler's Fréchet distance is over "
            f"all {config['sample_batches'] * config['sample_batch']} of its images against as many test images; "
            f"*real digits* is the distance of as many real training digits to the same test images.")


def imports_md(results: dict) -> str:
    r = results["cases"].get("import")
    if not _ok(r):
        return "Import time not measured: " + (r or {}).get("error", "not run")
    heavy = ", ".join(r["heavy_modules_added"]) or "none"
    rows = [["import torch", f"{r['torch_seconds']:.3f}"],
            ["import ddpm_utils (after torch)", f"{r['ddpm_utils_seconds']:.3f}"]]
    return (table(["step", f"seconds (median of {r['repeats']} fresh interpreters)"], rows)
            + f"\n\nHeavy modules that `import ddpm_utils` adds to those torch imported: {heavy} (checked: {', '.join(r['heavy_modules_checked'])}).")


def targets_md(results: dict) -> str:
    s = summary(results)
    met = s["met"]
    mark = lambda ok: "—" if ok is None else ("met" if ok else "**missed**")
    cases, rec = results["cases"], results["recommended"]
    chosen = (cases.get(f"train/{rec}") or {}).get("precision")
    default = f"default step ({rec}" + (f" → {chosen}" if chosen and chosen != rec else "") + ")"
    rows = [
        [f"training images/s, {default} ÷ textbook loop (fp32)", f"≥ {TARGETS['training']}×",
         _ratio(s.get("training_speedup")), mark(met["training_speedup"])],
        ["the same, both in fp32: package step ÷ textbook loop", "no goal",
         _ratio(s.get("training_speedup_fp32")), ""],
        ["ms/step, diffusers UNet2DModel ÷ package UNet (same step)", f"≥ {TARGETS['diffusers']}×",
         _ratio(s.get("diffusers_same_step")), mark(met["diffusers_same_step"])],
        ["time per batch, DDPM-1000 ÷ DDIM-50", f"≥ {TARGETS['ddim_speedup']:.0f}×",
         _ratio(s.get("ddim50_speedup"), 1), mark(met["ddim50_speedup"])],
        ["Fréchet distance, DDIM-50 ÷ DDPM-1000", f"≤ {TARGETS['ddim_frechet']}×",
         _ratio(s.get("ddim50_frechet_ratio")), mark(met["ddim50_frechet_ratio"])],
        ["seconds `import ddpm_utils` adds to `import torch`", f"< {TARGETS['import_seconds']}",
         _f(s.get("import_seconds"), 3), mark(met["import_seconds"])],
    ]
    if "gpu_train_seconds" in met:
        rows += [
            ["GPU, `full` preset: seconds of training", f"≤ {TARGETS['gpu_seconds']:.0f}",
             _f(s["gpu_train_seconds"], 0), mark(met["gpu_train_seconds"])],
            ["GPU, `full` preset: best Fréchet distance ÷ floor", f"≤ {TARGETS['gpu_frechet_over_floor']}×",
             _ratio(s["gpu_frechet_over_floor"]), mark(met["gpu_frechet_over_floor"])],
        ]
    return table(["target", "goal", "measured", ""], rows)


def _compare(a: dict, b: dict, name_a: str, name_b: str) -> str:
    """'A: x ms/step against B: y ms/step (r×, beyond the spread / within it)'."""
    ratio = a["images_per_s"] / b["images_per_s"]
    verdict = beyond_spread(a, b)
    spread = "" if verdict is None else (", a difference larger than the spread of the repeats" if verdict
                                          else ", within the spread of the repeats")
    return (f"{name_a} {a['ms_per_step']:,.0f} ms/step against {name_b} {b['ms_per_step']:,.0f} "
            f"({ratio:.2f}× the throughput{spread})")


def findings_md(results: dict) -> str:
    """What the tables say, in sentences whose numbers come from the same results."""
    cases = results["cases"]
    get = lambda name: cases.get(name) if _ok(cases.get(name)) else None  # noqa: E731
    lines = []
    textbook, fp32, bf16, auto = get("train/textbook"), get("train/fp32"), get("train/bf16"), get("train/auto")
    if textbook and fp32:
        lines.append("- **Textbook loop against the package's step, both float32**: "
                     + _compare(fp32, textbook, "package", "textbook") + ".")
    resident = get("train/textbook-resident")
    if textbook and resident:
        lines.append("- **The textbook loop with its data transformed once and kept in memory**: "
                     + _compare(resident, textbook, "in memory", "per-image pipeline") + ".")
    if fp32 and bf16:
        memory = ""
        if all(r.get("peak_rss_mb") and r.get("baseline_rss_mb") for r in (fp32, bf16)):
            memory = (f"; the step adds {bf16['peak_rss_mb'] - bf16['baseline_rss_mb']:,.0f} MiB of memory in bf16 "
                      f"against {fp32['peak_rss_mb'] - fp32['baseline_rss_mb']:,.0f} in float32")
        lines.append("- **bf16 autocast against float32**: " + _compare(bf16, fp32, "bf16", "fp32") + memory + ".")
    if auto:
        line = (f"- **`precision=\"auto\"`** chose {auto['precision']} from its trial steps: "
                f"{auto['precision_note'].split(' — ', 1)[-1]}")
        forced = get(f"train/{auto['precision']}")
        if forced and forced is not auto:
            line += (f". After the trial it trains at {auto['images_per_s']:,.1f} images/s against "
                     f"{forced['images_per_s']:,.1f} for {auto['precision']} set by hand (")
            line += ("a difference larger than the spread" if beyond_spread(auto, forced)
                     else "within the spread") + " of the repeats)"
            trial_ran_fp32 = auto["precision"] != "fp32" and "fp32 " in auto["precision_note"]
            if trial_ran_fp32 and all(r.get("peak_rss_mb") and r.get("baseline_rss_mb") for r in (auto, forced)):
                line += (f", and its peak memory is that of its float32 trial steps: "
                         f"+{auto['peak_rss_mb'] - auto['baseline_rss_mb']:,.0f} MiB against "
                         f"+{forced['peak_rss_mb'] - forced['baseline_rss_mb']:,.0f}")
        lines.append(line + ".")
    for variant, base, what in (("bf16", "bf16-attn-bf16", "attention in float32 inside the bf16 step (the "
                                 "package's default on a CPU) against attention in bf16"),
                                ("fp32-cl", "fp32", "channels_last, float32"), ("bf16-cl", "bf16", "channels_last, bf16"),
                                ("bf16-compile", "bf16", "torch.compile, bf16")):
        a, b = get(f"train/{variant}"), get(f"train/{base}")
        if a and b:
            extra = (f"; it compiled for {a['first_steps_seconds']:.0f} s first" if "compile" in variant else "")
            lines.append(f"- **{what}**: " + _compare(a, b, variant, base) + extra + ".")
    profile = get("profile")
    if profile:
        for name, step in profile["steps"].items():
            if "skipped" in step:
                continue
            top = step["top"][0]
            attention = sum(e["share"] for e in step["top"] if "scaled_dot_product" in e["op"])
            lines.append(f"- **Where the time goes, the step in {name}**: {step['flops_per_s'] / 1e9:,.0f} GFLOP/s, "
                         f"{step['share_of_ceiling']:.0%} of this machine's fastest {step.get('precision', name)} "
                         f"matrix product ({profile['ceilings'][step.get('precision', name)] / 1e9:,.0f} "
                         f"GFLOP/s); the largest operator by self time is {op_name(top['op'])} ({top['share']:.0%} "
                         f"of the step), and the attention operators among the ten largest take {attention:.0%}.")
    if profile and profile.get("emulated_bf16"):
        e = profile["emulated_bf16"]
        lines.append(f"- **No bf16 instructions on this CPU**: a {e['size']}² bf16 matrix product ran at "
                     f"{e['flops_per_s'] / 1e9:,.1f} GFLOP/s against {e['fp32_flops_per_s'] / 1e9:,.0f} in float32, "
                     f"so `precision=\"auto\"` times nothing here and trains in float32, and the bf16 rows are skipped.")
    quality = {p: get(f"quality/{p}") for p in results["config"].get("compared_precisions", ())}
    if quality.get("fp32") and quality.get("bf16"):
        a, b = quality["fp32"], quality["bf16"]
        lines.append(f"- **Quality at equal steps** ({a['steps']:,} steps, one training run each): final loss "
                     f"{a['final_loss']:.4f} in float32 against {b['final_loss']:.4f} in bf16 (spread over the last "
                     f"steps ± {max(a['final_loss_sd'], b['final_loss_sd']):.4f}); Fréchet distance "
                     f"{a['frechet']:.1f} against {b['frechet']:.1f} (real digits {a['floor']:.1f}: both models are "
                     f"{min(a['frechet'], b['frechet']) / a['floor']:.1f}× or more from them, far from trained).")
    rec = results["recommended"]
    for diffusers, package, loop in ((get(f"train/diffusers-{rec}"), get(f"train/{rec}"), "the package's step"),
                                     (get("train/diffusers-textbook"), textbook, "the textbook loop")):
        if diffusers and package:
            confound = ""
            if loop == "the package's step" and package.get("precision") == "bf16" and results["device_type"] == "cpu":
                confound = ("; in bf16 the package's UNet computes attention in float32 on a CPU and diffusers' "
                            "in bf16, so this row compares that choice too")
            lines.append(f"- **diffusers' UNet2DModel against the package's UNet, in {loop}**: "
                         + _compare(diffusers, package, "diffusers", "package") + confound + ".")
    ddpm = get("sample/ddpm-1000")
    for kind, steps in results["config"].get("samplers", ()):
        r = get(f"sample/{kind}-{steps}")
        if ddpm and r and r is not ddpm:
            lines.append(f"- **{_sampler_name(kind, steps)} against DDPM-1000**: {_batch_seconds(r):.2f} s against "
                         f"{_batch_seconds(ddpm):.1f} s per {results['config']['sample_batch']} images (medians), "
                         f"{_batch_seconds(ddpm) / _batch_seconds(r):.1f}× faster for {1000 / steps:.0f}× fewer "
                         f"network calls, at {r['frechet'] / ddpm['frechet']:.2f}× DDPM-1000's Fréchet distance "
                         f"({r['frechet']:.1f} against {ddpm['frechet']:.1f}, real digits at {ddpm['floor']:.1f}; "
                         f"one sampling run each).")
    samplers = {p: get(f"sample/ddim-50@{p}") for p in results["config"].get("compared_precisions", ())}
    if samplers.get("fp32") and samplers.get("bf16") and samplers["bf16"].get("chosen", "bf16") == "bf16":
        a, b = samplers["fp32"], samplers["bf16"]
        lines.append(f"- **Sampling in bf16**: DDIM-50 at {b['ms_per_step']:.1f} ms per call against "
                     f"{a['ms_per_step']:.1f} in float32 ({a['ms_per_step'] / b['ms_per_step']:.2f}×), Fréchet "
                     f"{b['frechet']:.1f} against {a['frechet']:.1f}.")
    return "\n".join(lines) if lines else "Nothing measured."


def _ratio(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}×"


FRAGMENTS = {
    "machine": machine_md,
    "findings": findings_md,
    "targets": targets_md,
    "training": training_md,
    "training_cost": training_cost_md,
    "diffusers": diffusers_md,
    "sample_model": sample_model_md,
    "sampling": sampling_md,
    "quality": quality_md,
    "profile": profile_md,
    "imports": imports_md,
}


def fragments(results: dict) -> dict[str, str]:
    """Every Markdown fragment of the report, by name."""
    return {name: render(results) + "\n" for name, render in FRAGMENTS.items()}
