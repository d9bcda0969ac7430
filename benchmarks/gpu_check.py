#!/usr/bin/env python
"""GPU check of the speed switches: fp32, bf16 autocast, channels-last, compile (see gpu_check.sh).

    python benchmarks/gpu_check.py --json benchmarks/results/gpu_check_h200.json   # on a GPU, < 5 min
    python benchmarks/gpu_check.py --dry-run --json /tmp/gpu_check.json             # the same code on CPU, tiny

Model: ``pretrain/aasae/imagenet`` (ResNet-50 encoder and decoder, ImageNet stem, 224 px, the
original-image pass on), trained by a plain loop (the training step without VISSL's data
pipeline and hooks: original-image pass, forward, ``aasae_loss``, backward, Adam) on
ImageNet-shaped random tensors, batch ``--batch-size`` (128, the config's per-GPU batch).

For each variant (``fp32``; ``channels_last``; ``bf16`` autocast; ``bf16_channels_last``;
``bf16_channels_last_compile``):

1. agreement: from the same initial weights, the same images and the same latent noise, the losses
   of the first ``--check-steps`` (3) training steps must agree with fp32's within the variant's
   tolerance (relative: 1e-3 for the fp32 variants, which on GPUs run convolutions in TF32 by
   default; 2e-2 for bfloat16);
2. speed: images/s over ``--iterations`` (10) steps after ``--warmup`` (3), and peak memory
   (CUDA: max allocated; CPU: max RSS).

Speed against the device's limit, as ``throughput.py`` reports it: the FLOPs per image of one
training step (``FlopCounterMode``, counted once on the fp32 model: original-image pass, forward,
backward), the peak measured here before the variants (``--peak-seconds`` each: an 8192^3 matmul
and forward + backward of the model's dominant convolution shape, fp32 and bf16; fp32 convolutions
run in TF32 as PyTorch's cuDNN default, fp32 matmuls do not), and per variant the achieved GFLOP/s
and its fraction of the measured peak of the variant's precision (MFU), and of the datasheet's
dense peak where the GPU's name is known (H100 / H200 / A100).

Reference point on the same device: a plain torchvision ResNet-50 supervised step (cross-entropy
on 1000 classes, SGD, bf16 autocast + channels-last: the usual fast recipe) at the same batch;
the ratio says what the decoder and the second encoder pass cost over a plain ResNet-50 step.
``--dry-run`` runs every part on the CPU with the quickstart model (ResNet-18, 32 px), batch 2,
one timed step, and ``torch.compile(backend="eager")``: it checks the script, not the speed.
Exit status 1 if a variant disagrees with fp32 beyond its tolerance.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import throughput  # noqa: E402  (benchmarks/throughput.py: FLOP counting, peak, the report's arithmetic)

VARIANTS = {
    # name: (bf16 autocast, channels-last, compile), relative loss tolerance against fp32
    "fp32": ((False, False, False), 0.0),
    "channels_last": ((False, True, False), 1e-3),
    "bf16": ((True, False, False), 2e-2),
    "bf16_channels_last": ((True, True, False), 2e-2),
    "bf16_channels_last_compile": ((True, True, True), 2e-2),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dry-run", action="store_true", help="CPU, quickstart model, batch 2, one timed step")
    p.add_argument("--batch-size", type=int, default=None, help="per-device batch (default 128; dry run 2)")
    p.add_argument("--check-steps", type=int, default=3, help="training steps compared with fp32 (default %(default)s)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (default 3; dry run 1)")
    p.add_argument("--iterations", type=int, default=None, help="timed steps (default 10; dry run 1)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of %(default)s")
    p.add_argument("--peak-seconds", type=float, default=None, help="each peak microbenchmark (default 1; dry run 0.1)")
    p.add_argument("--json", required=True, help="write the results here")
    args = p.parse_args(argv)
    tiny = args.dry_run
    args.batch_size = args.batch_size or (2 if tiny else 128)
    args.warmup = args.warmup if args.warmup is not None else (1 if tiny else 3)
    args.iterations = args.iterations or (1 if tiny else 10)
    args.peak_seconds = args.peak_seconds if args.peak_seconds is not None else (0.1 if tiny else 1.0)
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {unknown}; known: {list(VARIANTS)}")
    if "fp32" not in args.variants:
        args.variants.insert(0, "fp32")
    return args


def peak_memory(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(config, device, switches, dry_run):
    """The model with the variant's switches, its loss and a fused Adam (where PyTorch has one)."""
    import torch
    from classy_vision.losses import build_loss
    from vissl.models import build_model

    from vissl_aasae.settings import PerformanceSettings
    from vissl_aasae.trainer.aasae_performance import apply_performance_settings, fused_adam_supported

    bf16, channels_last, compile_ = switches
    model = build_model(config.MODEL, config.OPTIMIZER)
    settings = PerformanceSettings(
        bf16_autocast=bf16, channels_last=channels_last, fused_optimizer=False, compile=False
    )
    model = apply_performance_settings(model, settings, device).to(device).train()
    if compile_:
        for module in (model.trunk, *model.heads):
            module.compile(backend="eager" if dry_run else "inductor")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=fused_adam_supported(device) or None)
    return model, build_loss(config.LOSS).to(device), optimizer


def train_steps(model, loss_fn, optimizer, x, target, steps, device, seed=0):
    """Losses of ``steps`` training steps (the original-image pass first, as aasae_task), seconds of each."""
    import torch

    from vissl_aasae.models.posterior import posterior_of

    losses, seconds = [], []
    torch.manual_seed(seed)
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        posterior_of(model, target)
        optimizer.zero_grad(set_to_none=True)
        output = model(x)
        loss = loss_fn(output[0], target)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        sync(device)
        seconds.append(time.perf_counter() - start)
    return [float(v) for v in losses], seconds


def flops_and_peak(config, device, x, target, dry_run, peak_seconds):
    """FLOPs per image of one training step of the fp32 model, and this device's measured peak."""
    import torch

    from vissl_aasae.models.posterior import posterior_of

    torch.manual_seed(0)
    model, loss_fn, _ = build(config, device, (False, False, False), dry_run)

    def forward():
        posterior_of(model, target)  # the original-image pass, before the forward (counted apart)
        return loss_fn(model(x)[0], target)

    flops = throughput.step_flops(model, forward, lambda loss: loss.backward(), x.shape[0])
    conv = flops["convolutions"][0]
    peak = {}
    dtypes = {"fp32": torch.float32} | ({"bf16": torch.bfloat16} if throughput.bf16_supported(device) else {})
    for name, dtype in dtypes.items():
        mm = throughput.matmul_peak(device, dtype, peak_seconds, n=1024 if dry_run else None)
        cv = throughput.conv_peak(device, dtype, conv, peak_seconds, channels_last=True)
        peak[name] = {"matmul": mm["gflop_per_s"], "conv": cv["gflop_per_s"]}
        peak[name]["best"] = max(peak[name].values())
        print(
            f"peak {name}: matmul {mm['gflop_per_s']:.1f} GFLOP/s, conv {throughput.conv_name(conv)} "
            f"{cv['gflop_per_s']:.1f} GFLOP/s",
            flush=True,
        )
    return flops, peak


def torchvision_reference(batch, side, device, warmup, iterations):
    """A plain torchvision ResNet-50 supervised step, bf16 autocast + channels-last: images/s."""
    import torch
    import torch.nn.functional as F
    import torchvision

    model = torchvision.models.resnet50(weights=None).to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, side, side, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    seconds = []
    for _ in range(warmup + iterations):
        sync(device)
        start = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        seconds.append(time.perf_counter() - start)
    timed = seconds[warmup:]
    return {"images_per_s": batch * len(timed) / sum(timed), "peak_memory_mib": peak_memory(device)}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    import vissl_aasae  # noqa: F401
    from vissl_aasae.launcher import compose

    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    name = "pretrain/aasae/quickstart" if args.dry_run else "pretrain/aasae/imagenet"
    _, config = compose([f"config={name}", "config.CHECKPOINT.DIR=/tmp/aasae_gpu_check_unused"])
    side = int(config.MODEL.AASAE.INPUT_HEIGHT)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, side, side, generator=g).to(device)
    target = torch.randn(args.batch_size, 3, side, side, generator=g).to(device)
    started = datetime.datetime.now(datetime.timezone.utc)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    sheet_name = throughput.datasheet_name(device_name) if device.type == "cuda" else None
    sheet = throughput.DATASHEET_TFLOPS.get(sheet_name or "")
    flops, peak = flops_and_peak(config, device, x, target, args.dry_run, args.peak_seconds)
    print(f"FLOPs per image (one training step): {flops['per_image'] / 1e9:.2f} G", flush=True)
    if sheet:
        print(f"datasheet {sheet_name} (dense TFLOP/s): {sheet}", flush=True)
    results, ok = {}, True
    torch.manual_seed(0)
    initial = None
    for variant in args.variants:
        switches, tolerance = VARIANTS[variant]
        t0 = time.perf_counter()
        torch.manual_seed(0)
        model, loss_fn, optimizer = build(config, device, switches, args.dry_run)
        if initial is None:
            initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            model.load_state_dict(initial)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        losses, _ = train_steps(model, loss_fn, optimizer, x, target, args.check_steps, device)
        model, loss_fn, optimizer = build(config, device, switches, args.dry_run)  # fresh optimizer state
        model.load_state_dict(initial)
        _, seconds = train_steps(model, loss_fn, optimizer, x, target, args.warmup + args.iterations, device, seed=1)
        timed = seconds[args.warmup :]
        reference = results.get("fp32", {}).get("losses", losses)
        difference = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses, reference))
        agrees = difference <= tolerance
        ok &= agrees
        precision = "bf16" if switches[0] else "fp32"
        datasheet = None
        if sheet:
            datasheet = {precision: sheet[precision]} | ({"tf32": sheet["tf32"]} if precision == "fp32" else {})
        images_per_s = args.batch_size * len(timed) / sum(timed)
        report = throughput.flop_report(flops["per_image"], images_per_s, peak.get(precision), datasheet)
        results[variant] = {
            "bf16_autocast": switches[0],
            "channels_last": switches[1],
            "compile": switches[2],
            "losses": losses,
            "max_relative_loss_difference_vs_fp32": difference,
            "tolerance": tolerance,
            "agrees_with_fp32": agrees,
            "images_per_s": images_per_s,
            "flops": report,
            "first_step_seconds": seconds[0],
            "peak_memory_mib": peak_memory(device),
            "variant_seconds": time.perf_counter() - t0,
        }
        r = results[variant]
        mfu = (
            f"MFU {100 * report['fraction_of_peak']:5.1f} % of measured {precision}"
            if "fraction_of_peak" in report
            else ""
        )
        mfu += "".join(
            f", {100 * v:.1f} % of datasheet {k[len('fraction_of_datasheet_') :]}"
            for k, v in report.items()
            if k.startswith("fraction_of_datasheet")
        )
        print(
            f"{variant:28s} {r['images_per_s']:9.1f} img/s  {report['gflop_per_s'] / 1e3:7.2f} TFLOP/s  {mfu}  "
            f"peak {r['peak_memory_mib']:8.0f} MiB  "
            f"loss diff {difference:.2e} (tol {tolerance:g}) {'ok' if agrees else 'DISAGREES'}",
            flush=True,
        )
        del model, optimizer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    tv = torchvision_reference(args.batch_size, side, device, args.warmup, args.iterations)
    best = max(results.values(), key=lambda r: r["images_per_s"])
    print(
        f"{'torchvision resnet50 (bf16, NHWC)':28s} {tv['images_per_s']:9.1f} img/s  (AASAE best / plain RN50: "
        f"{best['images_per_s'] / tv['images_per_s']:.2f})",
        flush=True,
    )
    summary = {
        "command": " ".join(["python benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": started.isoformat(timespec="seconds"),
        "device": device_name,
        "datasheet": sheet_name,
        "flops": flops,
        "peak_gflop_per_s": peak,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "dry_run": args.dry_run,
        "config": name,
        "batch_size": args.batch_size,
        "resolution": side,
        "check_steps": args.check_steps,
        "warmup": args.warmup,
        "iterations": args.iterations,
        "variants": results,
        "torchvision_resnet50_bf16_channels_last": tv,
        "all_agree": ok,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
