"""The AASAE.PERFORMANCE switches (aasae_task) and benchmarks/throughput.py on a tiny config.

No timed assertions: the numbers checked are the switches' effects (memory format, dtypes,
float32 likelihood, unchanged parameter names), and the benchmark's JSON bookkeeping.
"""

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import REPO

import vissl_aasae.trainer  # noqa: F401  (registers aasae_task)
from vissl_aasae.launcher import compose
from vissl_aasae.settings import PerformanceSettings
from vissl_aasae.trainer.aasae_performance import AutocastForward, apply_performance_settings

BENCHMARK = REPO / "benchmarks" / "throughput.py"


def quickstart(*overrides):
    return compose(["config=pretrain/aasae/quickstart", "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=4", *overrides])[1]


def build(config):
    from vissl.models import build_model

    return build_model(config.MODEL, config.OPTIMIZER)


def test_settings_defaults_and_auto_decisions():
    settings = PerformanceSettings.from_config(quickstart())
    assert settings == PerformanceSettings(False, "auto", "auto", False)
    cpu = settings.resolved(torch.device("cpu"))
    assert (cpu.channels_last, cpu.fused_optimizer) == (True, True)  # torch >= 2.4 has a fused CPU Adam
    cuda = settings.resolved(torch.device("cuda"))
    assert cuda.channels_last is False and cuda.fused_optimizer is True
    assert settings.resolved(torch.device("cuda"), mixed_precision=True).channels_last is True
    config = quickstart(
        "++config.AASAE.PERFORMANCE.CHANNELS_LAST=false", "++config.AASAE.PERFORMANCE.BF16_AUTOCAST=true"
    )
    overridden = PerformanceSettings.from_config(config)
    assert overridden.resolved(torch.device("cpu")).channels_last is False
    assert overridden.resolved(torch.device("cuda")).channels_last is False and overridden.bf16_autocast


def test_fused_adam_reaches_the_same_parameters():
    """FUSED_OPTIMIZER: the same Adam in one kernel; 5 steps on the quickstart model agree to 1e-5."""
    from vissl_aasae.trainer.aasae_performance import use_fused_optimizer

    torch.manual_seed(0)
    a, b = build(quickstart()), build(quickstart())
    b.load_state_dict(a.state_dict())
    plain = torch.optim.Adam(a.parameters(), lr=1e-3, betas=(0.9, 0.999))
    fused = use_fused_optimizer(torch.optim.Adam(b.parameters(), lr=1e-3, betas=(0.9, 0.999)))
    assert fused.param_groups[0]["fused"] is True and fused.param_groups[0]["lr"] == 1e-3
    for step in range(5):
        g = torch.Generator().manual_seed(step)
        for pa, pb in zip(a.parameters(), b.parameters()):
            pa.grad = torch.randn(pa.shape, generator=g)
            pb.grad = pa.grad.clone()
        plain.step()
        fused.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    "override, message",
    [
        ("++config.AASAE.PERFORMANCE.CHANNEL_LAST=true", r"AASAE.PERFORMANCE has unknown keys \[.CHANNEL_LAST.\]"),
        ("++config.AASAE.PERFORMANCE.COMPILE=1", "AASAE.PERFORMANCE.COMPILE=1 must be True or False"),
    ],
)
def test_bad_switch_names_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        PerformanceSettings.from_config(quickstart(override))


def test_aasae_task_builds_a_channels_last_model_with_unchanged_names():
    from classy_vision.tasks import TASK_REGISTRY

    config = quickstart("++config.TRAINER.TASK_NAME=aasae_task", "++config.AASAE.PERFORMANCE.CHANNELS_LAST=true")
    task = TASK_REGISTRY[config.TRAINER.TASK_NAME].from_config(config)
    model = task._build_model()
    reference = build(quickstart())
    assert list(model.state_dict()) == list(reference.state_dict())
    conv = model.trunk._feature_blocks.conv1.weight
    assert conv.dim() == 4 and conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert reference.trunk._feature_blocks.conv1.weight.is_contiguous()
    # 2-D weights are left alone
    assert model.heads[0].fc_mu.weight.is_contiguous()


def forward_and_loss(model, x, target, seed=0):
    from vissl_aasae.losses.aasae_loss import AASAELossCriterion

    torch.manual_seed(seed)
    output = model(x)[0]
    loss, _ = AASAELossCriterion()(*output, target)
    return output, loss


def test_bf16_autocast_covers_the_forward_only_and_keeps_the_likelihood_float32():
    torch.manual_seed(0)
    config = quickstart()
    fp32 = build(config).train()
    bf16 = build(config).train()
    bf16.load_state_dict(fp32.state_dict())
    apply_performance_settings(
        bf16, PerformanceSettings(bf16_autocast=True, channels_last=False, fused_optimizer=False), torch.device("cpu")
    )
    x, target = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    out32, loss32 = forward_and_loss(fp32, x, target)
    out16, loss16 = forward_and_loss(bf16, x, target)
    assert out32[0].dtype == torch.float32 and out16[0].dtype == torch.bfloat16  # x_hat
    assert loss16.dtype == torch.float32
    assert not torch.is_autocast_enabled("cpu")  # the region closed with the forward
    # same weights, same noise: the reconstructions agree to bfloat16 precision
    relative = (out16[0].float() - out32[0]).norm() / out32[0].norm()
    assert relative < 0.05, relative
    assert loss16.item() == pytest.approx(loss32.item(), rel=0.02)
    loss16.backward()
    grads = [p.grad for p in bf16.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_autocast_region_closes_when_the_forward_raises():
    module = AutocastForward("cpu").attach(torch.nn.Linear(3, 2))
    with pytest.raises(RuntimeError):
        module(torch.randn(2, 4))  # wrong width
    assert not torch.is_autocast_enabled("cpu")
    assert module(torch.randn(2, 3)).dtype == torch.bfloat16


@pytest.mark.slow
def test_benchmark_runs_on_a_tiny_config_and_writes_its_json(tmp_path):
    out = tmp_path / "throughput.json"
    cmd = [
        sys.executable,
        str(BENCHMARK),
        "--batch-size",
        "2",
        "--warmup",
        "1",
        "--iterations",
        "2",
        "--data-batches",
        "3",
        "--workers",
        "0",
        "--metrics-frequency",
        "2",
        "--modes",
        "step,data,plain,reference",
        "--peak-seconds",
        "0.1",
        "--profile",
        "1",
        "--json",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert set(summary["results"]) == {"step", "data", "plain", "reference"}
    assert summary["software"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    for mode, timed in (("step", 2), ("data", 3), ("plain", 2), ("reference", 2)):
        result = summary["results"][mode]
        run = result["runs"][0]
        assert run["timed_iterations"] == timed == len(run["records"])
        seconds = [r["seconds"] for r in run["records"]]
        images = sum(r.get("images", 2) for r in run["records"])
        assert run["images_per_s"] == pytest.approx(images / sum(seconds))
        assert result["images_per_s"] == run["images_per_s"] and math.isfinite(result["images_per_s"])
        assert run["peak_rss_mib"] > 100
        assert run["resolved"]["batch_size"] == 2 and run["resolved"]["resolution"] == 32
    step = summary["results"]["step"]["runs"][0]
    assert step["resolved"]["task"] == "aasae_task"
    # iterations 0 (warm-up), 1, 2 ran; with AASAE.METRICS.LOG_FREQUENCY 2 the metrics hook logged 0 and 2
    assert [r["iteration"] for r in step["records"]] == [1, 2]
    assert step["metrics"]["logged"]["iterations"] == [2]
    assert step["metrics"]["not_logged"]["iterations"] == [1]
    # the reference's original-image pass (the config's default) and the training forward, every
    # iteration; the metrics reuse that pass (no third one where they log)
    assert step["metrics"]["not_logged"]["trunk_forwards"] == [2]
    assert step["metrics"]["logged"]["trunk_forwards"] == [2]
    assert step["resolved"]["performance_resolved"]["channels_last"] is True
    # FLOPs: counted once on aasae_task's model; VISSL's step, the plain loop and the reference,
    # each counted on its own extra iteration, do exactly that work
    flops = summary["flops"]
    assert 5.7e9 < flops["per_image"] < 5.8e9 and flops["batch"] == 2
    # the peak: measured in each model mode's process right after its timed iterations
    assert summary["peak"]["fp32"]["measurements"] == 3 and summary["datasheet"] is None
    for mode in ("step", "plain", "reference"):
        result = summary["results"][mode]
        assert result["flops_per_image_counted"] == flops["per_image"], mode
        report = result["flops"]
        assert report["gflop_per_s"] == pytest.approx(flops["per_image"] * result["images_per_s"] / 1e9)
        own = result["runs"][0]["peak"]["fp32"]
        matmul, conv = own["matmul"]["gflop_per_s"], own["conv"]["gflop_per_s"]
        assert own["conv"]["shape"] == flops["convolutions"][0]  # the model's dominant convolution
        assert report["fraction_of_peak"] == pytest.approx(report["gflop_per_s"] / max(matmul, conv))
        assert report["fraction_of_conv_peak"] == pytest.approx(report["gflop_per_s"] / conv)
    assert "flops" not in summary["results"]["data"]
    # --profile: plain and reference split their op time by kind; the convolutions' own speed
    for mode in ("plain", "reference"):
        profile = summary["results"][mode]["profile"]
        split = profile["seconds_per_iteration"]
        assert profile["iterations"] == 1 and split["convolution"] > 0
        assert sum(split.values()) <= profile["wall_seconds_per_iteration"] * 1.05
        conv_flops = sum(v for op, v in flops["by_op_per_image"].items() if "convolution" in op) * 2  # batch 2
        assert profile["convolution_gflop_per_s"] == pytest.approx(conv_flops / split["convolution"] / 1e9)
    assert summary["results"]["step"]["profile"] is None
    ratios = summary["ratios"]
    assert ratios["step / plain (img/s)"] == pytest.approx(
        summary["results"]["step"]["images_per_s"] / summary["results"]["plain"]["images_per_s"]
    )
    assert ratios["step / reference (img/s)"] == pytest.approx(
        summary["results"]["step"]["images_per_s"] / summary["results"]["reference"]["images_per_s"]
    )
    assert "step" in proc.stdout and "plain" in proc.stdout and "reference" in proc.stdout  # the table


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    """benchmarks/gpu_check.sh --dry-run: the GPU scripts' code on the CPU, tiny: throughput.py's
    step / plain / reference in bf16 and fp32 with FLOPs, measured peak and MFU; gpu_check.py's
    variants, whose first losses agree with fp32 within their tolerance, with speed, MFU and memory;
    the MFU table of both."""
    out = tmp_path / "gpu_check.json"
    cmd = [
        "bash",
        str(REPO / "benchmarks" / "gpu_check.sh"),
        "--dry-run",
        "--check-steps",
        "2",
        "--variants",
        "fp32,channels_last,bf16_channels_last_compile",
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=1200,
        env={
            **__import__("os").environ,
            "GPU_CHECK_JSON": str(out),
            "GPU_CHECK_DIR": str(tmp_path),
            "PYTHON": sys.executable,
        },
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["dry_run"] and summary["all_agree"] and summary["config"] == "pretrain/aasae/quickstart"
    assert set(summary["variants"]) == {"fp32", "channels_last", "bf16_channels_last_compile"}
    for name, variant in summary["variants"].items():
        assert len(variant["losses"]) == 2 and variant["agrees_with_fp32"], name
        assert variant["images_per_s"] > 0 and variant["peak_memory_mib"] > 100
    assert summary["variants"]["fp32"]["max_relative_loss_difference_vs_fp32"] == 0.0
    assert summary["torchvision_resnet50_bf16_channels_last"]["images_per_s"] > 0
    assert 5.7e9 < summary["flops"]["per_image"] < 5.8e9
    for name, variant in summary["variants"].items():
        precision = "bf16" if variant["bf16_autocast"] else "fp32"
        achieved = summary["flops"]["per_image"] * variant["images_per_s"] / 1e9
        assert variant["flops"]["gflop_per_s"] == pytest.approx(achieved)
        peak = summary["peak_gflop_per_s"][precision]["best"]
        assert variant["flops"]["fraction_of_peak"] == pytest.approx(achieved / peak), name
    table = json.loads((tmp_path / "gpu_dry_run_quickstart_rn18_32px_b2.json").read_text())
    assert set(table["results"]) == {"step bf16", "step fp32", "plain bf16", "plain fp32", "reference"}
    assert table["results"]["step bf16"]["resolved"]["performance"]["bf16_autocast"] is True
    assert table["results"]["step fp32"]["resolved"]["performance"]["bf16_autocast"] is False
    assert "step bf16 / reference (img/s)" in table["ratios"]
    assert all("fraction_of_peak" in table["results"][k]["flops"] for k in table["results"])
    mfu = proc.stdout[proc.stdout.index("=== MFU") :]
    assert "step bf16" in mfu and "step fp32" in mfu and "MFU measured" in mfu


# ------------------------------------------------------------------ FLOPs, peak and the report's arithmetic


def throughput_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("throughput_bench", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tp = throughput_module()


def conv_forward_flops(cin, cout, k, h_out, w_out):
    """Closed form: one multiply and one add per weight per output pixel, per image."""
    return 2 * cin * cout * k * k * h_out * w_out


@pytest.mark.parametrize("input_grad", [True, False])
def test_step_flops_of_a_conv_and_a_linear_layer_match_the_closed_form(input_grad):
    """step_flops on conv(3->8, 3x3, stride 2, pad 1) on 9x11 images + linear(8*5*6 -> 7), batch 4,
    with a no-grad pass of the conv on other images run by a forward pre-hook (as aasae_task's
    original-image pass): per image, the pass is one conv forward, the forward conv + linear, the
    backward 2x the forward (input and weight gradients of both) or, when the images need no
    gradient, 2x the linear's and 1x the conv's."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
    model = torch.nn.Sequential(conv, torch.nn.Flatten(), torch.nn.Linear(8 * 5 * 6, 7))
    originals = torch.randn(4, 3, 9, 11)

    def original_pass(module, args):
        with torch.no_grad():
            conv(originals)

    model.register_forward_pre_hook(original_pass)
    x = torch.randn(4, 3, 9, 11, requires_grad=input_grad)
    counts = tp.step_flops(model, lambda: model(x).square().sum(), lambda loss: loss.backward(), batch=4)

    h_out, w_out = (9 + 2 - 3) // 2 + 1, (11 + 2 - 3) // 2 + 1
    assert (h_out, w_out) == (5, 6)
    conv_fwd = conv_forward_flops(3, 8, 3, h_out, w_out)  # 12,960
    linear_fwd = 2 * (8 * 5 * 6) * 7  # 3,360
    assert counts["original_pass_per_image"] == conv_fwd
    assert counts["forward_per_image"] == conv_fwd + linear_fwd
    conv_bwd = 2 * conv_fwd if input_grad else conv_fwd  # input gradient only when the images need one
    assert counts["backward_per_image"] == conv_bwd + 2 * linear_fwd
    assert counts["per_image"] == conv_fwd + (conv_fwd + linear_fwd) + (conv_bwd + 2 * linear_fwd)
    assert sum(counts["by_op_per_image"].values()) == counts["per_image"]
    # the one convolution shape, called twice (the pass and the forward), once with gradients
    (shape,) = counts["convolutions"]
    assert (shape["batch"], shape["in_channels"], shape["out_channels"], shape["input_hw"]) == (4, 3, 8, [9, 11])
    assert (shape["calls"], shape["calls_with_grad"], shape["forward_flops"]) == (2, 1, 2 * 4 * conv_fwd)


def test_quickstart_step_flops_split_into_pass_forward_and_backward():
    """The real model and step (aasae_task's model and its original-image pass hook, the config's
    loss), batch 2: the pass is the trunk + projection forward counted on its own; the backward is
    2x the forward but for the input gradient of the first convolution (conv 3->64, 3x3, 32x32:
    images need none); without the pass, the same forward and backward and no pass."""
    from torch.utils.flop_counter import FlopCounterMode

    from vissl_aasae.models.posterior import posterior_of

    def counts(*overrides):
        config = quickstart(
            "++config.TRAINER.TASK_NAME=aasae_task", "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=2", *overrides
        )
        return tp.run_flops(None, config, torch.device("cpu")), config

    with_pass, config = counts()
    assert with_pass["original_image_pass"] and with_pass["batch"] == 2
    model = build(config).train()
    with FlopCounterMode(display=False) as counter:
        posterior_of(model, torch.randn(2, 3, 32, 32))
    assert with_pass["original_pass_per_image"] == counter.get_total_flops() / 2 > 1e9
    first_conv_input_grad = conv_forward_flops(3, 64, 3, 32, 32)
    assert with_pass["backward_per_image"] == 2 * with_pass["forward_per_image"] - first_conv_input_grad
    assert with_pass["per_image"] == pytest.approx(
        with_pass["original_pass_per_image"] + with_pass["forward_per_image"] + with_pass["backward_per_image"], abs=1
    )
    assert 5.7e9 < with_pass["per_image"] < 5.8e9  # the figure benchmarks/RESULTS.md quotes (5.753 G)
    without, _ = counts("config.MODEL.AASAE.ORIGINAL_IMAGE_PASS=False")
    assert not without["original_image_pass"] and without["original_pass_per_image"] == 0
    assert without["forward_per_image"] == with_pass["forward_per_image"]
    assert without["backward_per_image"] == with_pass["backward_per_image"]
    # the largest shape: the 64-channel 3x3 convolutions at 32x32 (4 in the pass, 4 with gradients)
    top = with_pass["convolutions"][0]
    assert (top["in_channels"], top["out_channels"], top["input_hw"], top["calls"]) == (64, 64, [32, 32], 8)


def test_peak_microbenchmarks_count_what_they_time():
    """The matmul's FLOPs are 2 n^3 per call, the convolution's forward + backward 3x its forward
    (input and weight gradients); GFLOP/s = FLOPs per call x calls / seconds / 1e9."""
    cpu = torch.device("cpu")
    mm = tp.matmul_peak(cpu, torch.float32, seconds=0.05, n=64)
    assert mm["flops_per_call"] == 2 * 64**3 and mm["calls"] >= 3
    spec = {
        "batch": 2,
        "in_channels": 4,
        "out_channels": 6,
        "input_hw": [8, 8],
        "kernel_size": [3, 3],
        "stride": [1, 1],
        "padding": [1, 1],
        "dilation": [1, 1],
        "groups": 1,
    }
    conv = tp.conv_peak(cpu, torch.float32, spec, seconds=0.05, channels_last=True)
    assert conv["flops_per_call"] == 3 * 2 * conv_forward_flops(4, 6, 3, 8, 8)
    for r in (mm, conv):
        assert r["gflop_per_s"] == pytest.approx(r["flops_per_call"] * r["calls"] / r["seconds"] / 1e9)
        assert len(r["chunk_gflop_per_s"]) >= 3 and min(r["chunk_gflop_per_s"]) <= r["gflop_per_s"]


def fake_result(images_per_s, precision="fp32", low=None, high=None):
    run = {"seconds_per_iteration": {"median": 1.0}, "images_per_s": images_per_s}
    return {
        "images_per_s": images_per_s,
        "images_per_s_min": low or images_per_s,
        "images_per_s_max": high or images_per_s,
        "images_per_s_median_iteration": images_per_s,
        "images_per_s_best_iteration": images_per_s,
        "images_per_cpu_s": images_per_s / 2,
        "peak_rss_mib": 1000.0,
        "load_average_1min": [0.1, 0.2],
        "runs": [run],
        "precision": precision,
        "flops_per_image_counted": 5.75e9,
    }


def test_flop_report_arithmetic_and_table():
    """GFLOP/s = FLOPs per image x images/s / 1e9; fraction = achieved / peak: the run's precision's
    peak (median over the repeats of each repeat's best), its convolution's, the datasheet's."""
    report = tp.flop_report(5.75e9, 20.0, {"best": 135.0, "matmul": 135.0, "conv": 60.0}, {"fp32": 67.0})
    assert report["gflop_per_image"] == 5.75
    assert report["gflop_per_s"] == pytest.approx(115.0)
    assert report["fraction_of_peak"] == pytest.approx(115.0 / 135.0)
    assert report["fraction_of_conv_peak"] == pytest.approx(115.0 / 60.0)
    assert report["fraction_of_datasheet_fp32"] == pytest.approx(115.0 / 67_000.0)

    def repeat(mm32, conv32, mm16, conv16):
        return {
            "fp32": {"matmul": {"gflop_per_s": mm32}, "conv": {"gflop_per_s": conv32}},
            "bf16": {"matmul": {"gflop_per_s": mm16}, "conv": {"gflop_per_s": conv16}},
        }

    peak = tp.aggregate_peak([repeat(100, 60, 700, 90), repeat(140, 50, 650, 120), repeat(120, 150, 600, 80)])
    assert peak["fp32"]["matmul"] == 120 and (peak["fp32"]["matmul_min"], peak["fp32"]["matmul_max"]) == (100, 140)
    assert peak["fp32"]["conv"] == 60 and peak["fp32"]["best"] == 140  # median of 100, 140, 150
    assert peak["bf16"]["best"] == 650
    summary = {
        "flops": {
            "per_image": 5.75e9,
            "original_pass_per_image": 1.1e9,
            "forward_per_image": 1.55e9,
            "backward_per_image": 3.1e9,
            "convolutions": [],
        },
        "peak": peak,
        "datasheet": "H100 SXM",
        "settings": {"compile": False},
        "results": {
            "step": fake_result(20.0, low=10.0, high=30.0),
            "step bf16": fake_result(40.0, "bf16"),
            "reference": fake_result(16.0),
            "data": fake_result(1000.0),
        },
    }
    summary["ratios"] = tp.compute_ratios(summary["results"])
    tp.add_flop_reports(summary)
    step, bf16 = summary["results"]["step"]["flops"], summary["results"]["step bf16"]["flops"]
    assert step["gflop_per_s"] == pytest.approx(115.0) and step["fraction_of_peak"] == pytest.approx(115.0 / 140)
    assert (step["gflop_per_s_min"], step["gflop_per_s_max"]) == pytest.approx((57.5, 172.5))
    assert step["fraction_of_datasheet_fp32"] == pytest.approx(115.0 / 67_000)
    assert step["fraction_of_datasheet_tf32"] == pytest.approx(115.0 / 494_500)
    assert bf16["fraction_of_peak"] == pytest.approx(230.0 / 650) and bf16["fraction_of_conv_peak"] == pytest.approx(
        230.0 / 90
    )
    assert bf16["fraction_of_datasheet_bf16"] == pytest.approx(230.0 / 989_000)
    assert summary["results"]["reference"]["flops"]["fraction_of_peak"] == pytest.approx(92.0 / 140)
    assert "flops" not in summary["results"]["data"] and step["counted_relative_difference"] == 0
    assert summary["ratios"]["step / reference (img/s)"] == 1.25
    assert summary["ratios"]["step bf16 / reference (img/s)"] == 2.5
    text = tp.table(summary)
    row = next(line for line in text.splitlines() if line.startswith("step "))
    assert row.split()[-4:] == ["5.750", "115.0", "82.1", "191.7"]
    assert "bf16 0.02 %" in next(line for line in text.splitlines() if line.startswith("step bf16: of the datasheet"))
    # runs that measured the peak in their own process: each run against its own, the median of those
    runs = [
        {"images_per_s": 20.0, "peak": {"fp32": {"matmul": {"gflop_per_s": 100.0}, "conv": {"gflop_per_s": 50.0}}}},
        {"images_per_s": 30.0, "peak": {"fp32": {"matmul": {"gflop_per_s": 300.0}, "conv": {"gflop_per_s": 345.0}}}},
        {"images_per_s": 10.0, "peak": {"fp32": {"matmul": {"gflop_per_s": 230.0}, "conv": {"gflop_per_s": 115.0}}}},
    ]
    paired = tp.paired_fractions(5.75e9, runs, "fp32")
    assert paired["fraction_of_peak"] == pytest.approx([1.15, 0.5, 0.25])  # 115/100, 172.5/345, 57.5/230
    assert paired["fraction_of_conv_peak"] == pytest.approx([2.3, 0.5, 0.5])
    summary["results"]["step"]["runs"] = runs
    tp.add_flop_reports(summary)
    step = summary["results"]["step"]["flops"]
    assert (
        step["fraction_of_peak"] == pytest.approx(0.5) and step["fraction_of_peak_runs"] == paired["fraction_of_peak"]
    )
    assert tp.paired_fractions(5.75e9, runs[:1] + [{"images_per_s": 1.0}], "fp32") is None  # one run without


def test_variants_and_their_ratios():
    args = tp.parse_args(["--modes", "step,data,plain,reference", "--precision", "fp32,bf16", "--compare-compile"])
    keys = [key for key, *_ in tp.run_plan(args)]
    assert keys == [
        "step fp32",
        "step fp32 compile",
        "step bf16",
        "step bf16 compile",
        "data",
        "plain fp32",
        "plain fp32 compile",
        "plain bf16",
        "plain bf16 compile",
        "reference",
    ]
    assert tp.run_plan(args)[-1] == ("reference", "reference", "fp32", False)  # the reference has no switches
    results = {key: fake_result(10.0 + i) for i, key in enumerate(keys)}
    ratios = tp.compute_ratios(results)
    assert ratios["step bf16 compile / step bf16 (img/s)"] == pytest.approx(13.0 / 12.0)
    assert ratios["step bf16 / step fp32 (img/s)"] == pytest.approx(12.0 / 10.0)
    assert ratios["step fp32 / plain fp32 (img/s)"] == pytest.approx(10.0 / 15.0)
    assert ratios["plain bf16 / reference (img/s)"] == pytest.approx(17.0 / 19.0)
    assert ratios["data / step fp32 (img/s)"] == pytest.approx(14.0 / 10.0)
    child = tp.parse_args(["--precision", "fp32,bf16", "--_child", "step", "--_out", "x", "--_variant", "bf16,1"])
    assert (child.precision, child.compile) == ("bf16", True)
    with pytest.raises(SystemExit):
        tp.parse_args(["--precision", "fp16"])


@pytest.mark.parametrize(
    "name, sheet",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA H100 NVL", None),
        ("Tesla V100-SXM2-16GB", None),
        ("", None),
    ],
)
def test_datasheet_peak_by_device_name(name, sheet):
    assert tp.datasheet_name(name) == sheet
    if sheet in ("H100 SXM", "H200"):
        assert tp.DATASHEET_TFLOPS[sheet] == {"bf16": 989.0, "fp32": 67.0, "tf32": 494.5}


@pytest.mark.slow
def test_compiled_training_follows_the_uncompiled_trajectory():
    """AASAE.PERFORMANCE.COMPILE (torch.compile of trunk and heads, inductor, CPU): 3 training steps
    (original-image pass, forward, loss, backward, SGD) of the quickstart model, batch 4, from the
    same weights, images and seeds, agree with the eager ones within float32 rounding.  Inductor
    draws its own random numbers for the latent sample unless ``fallback_random`` is set (then it
    calls ATen's generator, as eager): with it, measured here, the losses agree to the bit, the first
    gradients to 1.8e-5 of the largest gradient, parameters after 3 steps to 4.2e-7 and BatchNorm
    statistics to 8e-7 relative; without it the losses still agree to 3e-6 but the draws differ.
    SGD, not Adam: Adam divides rounding noise on near-zero gradients by its own size.
    Cold compilation takes minutes on 2 cores (warm inductor cache: ~30 s)."""
    import torch._inductor.config as inductor_config
    from classy_vision.losses import build_loss

    from vissl_aasae.models.posterior import posterior_of

    config = quickstart()
    torch.manual_seed(0)
    eager, compiled = build(config).train(), build(config).train()
    compiled.load_state_dict(eager.state_dict())
    switches = PerformanceSettings(bf16_autocast=False, channels_last=False, fused_optimizer=False, compile=True)
    apply_performance_settings(compiled, switches, torch.device("cpu"))
    loss_fn = build_loss(config.LOSS)
    g = torch.Generator().manual_seed(1)
    x, target = torch.randn(4, 3, 32, 32, generator=g), torch.randn(4, 3, 32, 32, generator=g)

    def train(model):
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
        losses = []
        for step in range(3):
            torch.manual_seed(step)
            optimizer.zero_grad()
            posterior_of(model, target)
            loss = loss_fn(model(x)[0], target)
            loss.backward()
            if step == 0:
                grads = [p.grad.clone() for p in model.parameters()]
            optimizer.step()
            losses.append(loss.item())
        return losses, grads

    losses, grads = train(eager)
    with inductor_config.patch(fallback_random=True):
        compiled_losses, compiled_grads = train(compiled)
    assert compiled_losses == pytest.approx(losses, rel=1e-5)
    scale = max(g.abs().max().item() for g in grads)
    for (name, p), g_eager, g_compiled in zip(eager.named_parameters(), grads, compiled_grads):
        torch.testing.assert_close(g_compiled, g_eager, rtol=1e-3, atol=1e-4 * scale, msg=name)
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-5, msg=name)
    for (name, b), c in zip(eager.named_buffers(), compiled.buffers()):
        torch.testing.assert_close(c, b, rtol=1e-4, atol=1e-6, msg=name)
