"""The benchmark's parts: the textbook baseline, the diffusers twin, the runner and its report.

Speeds are measured by ``python -m benchmarks``, never asserted here; these tests check that what
the benchmark compares is what it says it compares, and that the book's tables are its output.
"""

import json
import math
from pathlib import Path

import pytest
import torch

import ddpm_utils as du
from benchmarks import report
from benchmarks.__main__ import _run_isolated, run, update
from benchmarks.cases import case_table, diffusers_twin
from benchmarks.presets import PRESETS
from benchmarks.textbook import MnistDigits, textbook_transform, to_uint8, train_textbook
from ddpm_utils.models import UNet, UNetConfig, count_parameters

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = sorted((ROOT / "benchmarks" / "results").glob("*/results.json"))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_diffusers_twin_has_exactly_the_packages_parameter_count(preset):
    """Equal parameter count, the issue's condition for comparing against diffusers' UNet2DModel."""
    config = PRESETS[preset].train_model
    assert count_parameters(diffusers_twin(config)) == count_parameters(UNet(config))


def test_training_model_is_the_4m_unet_at_32x32():
    config = PRESETS["cpu"].train_model
    assert config.image_size == 32 and 3.5e6 < count_parameters(UNet(config)) < 4.5e6
    assert PRESETS["cpu"].batch_size == 128


def test_diffusers_twin_predicts_noise_shaped_like_its_input():
    twin = diffusers_twin(PRESETS["ci"].train_model)
    x = torch.randn(3, 1, 32, 32)
    assert twin(x, torch.tensor([0, 10, 999])).shape == x.shape


def _digits(n=24, size=28):
    pixels = torch.randint(0, 256, (n, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return pixels, torch.arange(n) % 10


def test_textbook_dataset_serves_the_packages_pixels():
    """uint8 → PIL → ToTensor → Normalize gives p/127.5 - 1, the package's scaling; to_uint8 inverts it."""
    pixels, labels = _digits()
    images = pixels[:, None].float() / 127.5 - 1
    assert torch.equal(to_uint8(images), pixels)
    dataset = MnistDigits(pixels, labels, textbook_transform(28))
    image, label = dataset[5]
    torch.testing.assert_close(image, images[5], atol=1e-6, rtol=0)
    assert label == 5
    assert dataset[0][0].shape == (1, 28, 28) and MnistDigits(pixels, labels, textbook_transform(32))[0][0].shape == (1, 32, 32)


def test_textbook_dataset_refuses_float_pixels():
    with pytest.raises(ValueError, match="uint8"):
        MnistDigits(torch.rand(4, 28, 28), torch.zeros(4), textbook_transform())


@pytest.mark.parametrize("resident", [False, True], ids=["dataloader", "resident"])
def test_textbook_loop_takes_gradient_steps(resident):
    pixels, labels = _digits(40)
    torch.manual_seed(0)
    model = UNet(UNetConfig(image_size=32, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention=False))
    before = [p.detach().clone() for p in model.parameters()]
    clock = train_textbook(model, du.make_schedule("linear", 100), MnistDigits(pixels, labels, textbook_transform(32)),
                           batch_size=8, steps=6, resident=resident)  # 6 steps: one epoch boundary (5 batches)
    assert len(clock) == 6 and clock == sorted(clock)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.fixture(scope="module")
def ci_results(tmp_path_factory):
    """Every case of the ci preset, run in this process."""
    out = tmp_path_factory.mktemp("bench")
    return run(PRESETS["ci"], out, isolate=False), out


def test_ci_preset_runs_every_case_without_error(ci_results):
    results, _ = ci_results
    assert list(results["cases"]) == list(case_table(PRESETS["ci"]))
    failed = {name: r["error"] for name, r in results["cases"].items() if "error" in r}
    assert not failed


def test_ci_preset_throughput_is_the_median_of_repeated_windows(ci_results):
    results, _ = ci_results
    preset = PRESETS["ci"]
    for name, r in results["cases"].items():
        if name.startswith("train/") and "skipped" not in r:
            assert r["timed_steps"] == preset.timed_steps and r["repeats"] == preset.repeats >= 3
            windows = r["window_seconds"]
            assert len(windows) == preset.repeats and min(windows) > 0
            rates = sorted(preset.batch_size * preset.timed_steps / s for s in windows)
            assert math.isclose(r["images_per_s"], rates[len(rates) // 2])
            assert r["images_per_s_min"] == rates[0] and r["images_per_s_max"] == rates[-1]
            assert math.isclose(r["ms_per_step"], 1000 * sorted(windows)[len(windows) // 2] / preset.timed_steps)


def test_ci_preset_auto_row_reports_its_choice(ci_results):
    results, _ = ci_results
    r = results["cases"]["train/auto"]
    assert r["precision"] in ("fp32", "bf16") and r["precision_note"].startswith("precision: ")


def test_beyond_spread_compares_min_max_ranges():
    a = {"images_per_s": 10.0, "images_per_s_min": 9.0, "images_per_s_max": 11.0}
    assert report.beyond_spread(a, {"images_per_s": 13.0, "images_per_s_min": 12.0, "images_per_s_max": 14.0})
    assert not report.beyond_spread(a, {"images_per_s": 11.5, "images_per_s_min": 10.5, "images_per_s_max": 12.0})
    assert report.beyond_spread(a, {"images_per_s": 11.5}) is None


def test_ci_preset_profiles_a_step_against_the_matmul_ceiling(ci_results):
    results, _ = ci_results
    r = results["cases"]["profile"]
    fp32 = r["steps"]["fp32"]
    assert fp32["flops"] > 0 and fp32["seconds"] > 0 and r["ceilings"]["fp32"] > 0
    assert math.isclose(fp32["share_of_ceiling"], fp32["flops"] / fp32["seconds"] / r["ceilings"]["fp32"])
    assert 0 < len(fp32["top"]) <= 10 and all(0 <= e["share"] <= 1 for e in fp32["top"])
    assert fp32["top"] == sorted(fp32["top"], key=lambda e: -e["self_ms"])


def test_ci_preset_quality_compares_precisions_at_equal_steps(ci_results):
    results, _ = ci_results
    runs = {p: results["cases"][f"quality/{p}"] for p in PRESETS["ci"].compared_precisions}
    measured = [r for r in runs.values() if "skipped" not in r]
    assert runs["fp32"] in measured and {r["steps"] for r in measured} == {PRESETS["ci"].quality_steps}
    assert all(math.isfinite(r["frechet"]) and math.isfinite(r["final_loss"]) for r in measured)


def test_ci_preset_samplers_share_reference_and_floor(ci_results):
    """Every sampler is judged against the same test images, so the floors agree exactly."""
    results, _ = ci_results
    samplers = [r for name, r in results["cases"].items() if name.startswith("sample/") and name != "sample/train"]
    assert len(samplers) == len(PRESETS["ci"].samplers) + len(PRESETS["ci"].compared_precisions)
    assert len({r["floor"] for r in samplers}) == 1
    for r in samplers:
        assert math.isfinite(r["frechet"]) and sum(r["class_counts"]) == r["n"]
        assert r["ms_per_step"] == pytest.approx(1000 * r["mean_seconds"] / r["steps"])


def test_ci_preset_writes_json_and_every_table(ci_results):
    results, out = ci_results
    assert json.loads((out / "results.json").read_text())["cases"].keys() == results["cases"].keys()
    for name in report.FRAGMENTS:
        text = (out / f"{name}.md").read_text()
        assert text.strip() and "not run" not in text


def test_update_merges_re_measured_cases_and_records_them(ci_results, tmp_path):
    import copy

    results, out = ci_results
    committed = tmp_path / "ci"
    committed.mkdir()
    (committed / "results.json").write_text((out / "results.json").read_text())
    again = copy.deepcopy(results)
    again["cases"] = {"import": {**results["cases"]["import"], "ddpm_utils_seconds": 0.5}}
    again["date"], again["wall_seconds"], again["commit"] = "2030-01-02", 90.0, "abc123"
    merged = update(again, committed, "the import changed")
    assert merged["cases"]["import"]["ddpm_utils_seconds"] == 0.5
    assert set(merged["cases"]) == set(results["cases"])  # nothing else dropped or added
    assert merged["updates"] == [{"cases": ["import"], "date": "2030-01-02", "commit": "abc123", "wall_seconds": 90.0,
                                  "why": "the import changed"}]
    assert merged["summary"]["import_seconds"] == 0.5
    machine_md = (committed / "machine.md").read_text()
    assert "Re-measured** on 2030-01-02" in machine_md and "because the import changed" in machine_md
    assert json.loads((committed / "results.json").read_text()) == merged
    other = copy.deepcopy(again)
    other["machine"]["device"] = "another CPU"
    with pytest.raises(SystemExit, match="same preset, device and software"):
        update(other, committed, "a different machine")
    other = copy.deepcopy(again)  # the same CPU name, without bf16 instructions: another machine
    other["machine"]["bf16_instructions"] = not results["machine"]["bf16_instructions"]
    with pytest.raises(SystemExit, match="same preset, device and software"):
        update(other, committed, "a different machine")


def test_import_probe_reports_heavy_modules(ci_results):
    results, _ = ci_results
    r = results["cases"]["import"]
    assert r["repeats"] == PRESETS["ci"].import_repeats and 0 < r["ddpm_utils_seconds"] < r["torch_seconds"]
    assert r["heavy_modules_added"] == []  # STYLE: import ddpm_utils pulls in torch and nothing heavy


def test_an_isolated_case_reports_its_own_peak_memory(tmp_path):
    result = _run_isolated("train/fp32", PRESETS["ci"], tmp_path)
    assert "error" not in result, result
    assert result["peak_rss_mb"] >= result["baseline_rss_mb"] > 0


def test_a_failing_isolated_case_is_recorded_not_lost(tmp_path):
    result = _run_isolated("sample/ddpm-1000", PRESETS["ci"], tmp_path)  # no sampling model trained in tmp_path
    assert result["error"].startswith("exit 1")


def test_targets_table_marks_a_missed_target():
    results = {"preset": "cpu", "recommended": "auto", "device_type": "cpu", "cases": {
        "train/textbook": {"images_per_s": 10.0, "ms_per_step": 100.0},
        "train/auto": {"images_per_s": 12.0, "ms_per_step": 80.0},
    }}
    s = report.summary(results)
    assert s["training_speedup"] == pytest.approx(1.2) and s["met"]["training_speedup"] is False
    assert s["met"]["ddim50_speedup"] is None
    assert "**missed**" in report.targets_md(results)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_committed_tables_are_the_report_of_the_committed_results(path):
    """The book includes these Markdown files: they must be exactly what the JSON beside them renders to."""
    results = json.loads(path.read_text())
    assert results["isolated"], "committed results must come from the isolated runner"
    assert results["preset"] != "ci", "the book shows real runs, not the ci preset"
    for name, text in report.fragments(results).items():
        assert (path.parent / f"{name}.md").read_text() == text, f"{name}.md differs from its results.json"


@pytest.mark.parametrize("run", ["cpu", "cpu-no-bf16"])
def test_the_book_page_includes_every_table_of_each_committed_cpu_run(run):
    assert (ROOT / "benchmarks" / "results" / run / "results.json").exists()
    page = (ROOT / "book" / "performance.md").read_text()
    for name in report.FRAGMENTS:
        assert f"```{{include}} ../benchmarks/results/{run}/{name}.md" in page, name
