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
        "--json",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
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
    """benchmarks/gpu_check.sh --dry-run: the GPU script's code on the CPU, tiny; every variant's first
    losses agree with fp32 within its tolerance, and the JSON holds speed and memory of each."""
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
        env={**__import__("os").environ, "GPU_CHECK_JSON": str(out), "PYTHON": sys.executable},
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
