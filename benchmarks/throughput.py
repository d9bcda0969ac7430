#!/usr/bin/env python
"""Throughput and peak memory of AASAE pretraining, three ways on one composed config:

- ``step``:  VISSL's full training step (its trainer, data pipeline, hooks, optimizer), run
             in-process through ``launch_distributed`` for ``warmup + iterations`` iterations; the
             time of each iteration is taken between consecutive ``on_step`` hooks;
- ``data``:  VISSL's data pipeline alone: the dataloader VISSL builds from the same config
             (dataset, transforms, sampler, collator, workers, pinned memory), iterated without a model;
- ``plain``: a minimal plain-PyTorch loop (forward, loss, backward, Adam step) on the identical
             model and loss, built from the same config, on pre-made random tensors: the ceiling
             for framework and data overhead (it makes the original-image pass when the config
             asks for it, as the step does);
- ``reference``: the authors' per-step work (their ``VAE.step`` + Lightning's Adam step) on the
             identical model, on pre-made tensors: a no-grad encoder + projection pass on the
             original image every step, posterior and prior as ``torch.distributions.Normal``,
             ``rsample``, analytic KL through ``kl_divergence``, a sample of the original image's
             posterior, ``KL(q || q_orig)``, cosine similarity, the decoder, the likelihood as
             ``Normal(x_hat, scale).log_prob``, ``logsumexp`` log p(x) and bits/dim, a
             ``make_grid`` of the reconstructions, ``log_scale.item()``, and ``torch.optim.Adam``
             with PyTorch's defaults; no channels-last, no compile: "ours vs the reference's way"
             on the same machine in one run (``step / reference``).

    python benchmarks/throughput.py --config pretrain/aasae/quickstart --batch-size 64 \\
        --device cpu --precision fp32 --iterations 8 --repeats 3 --json /tmp/quickstart.json

Options map onto the config (``--depth`` -> MODEL.TRUNK.AASAE_RESNET.DEPTH, ``--precision bf16``
-> AASAE.PERFORMANCE.BF16_AUTOCAST, ...); anything else is a Hydra override appended as is.
The step runs with ``TRAINER.TASK_NAME=aasae_task`` (VISSL's task plus the AASAE.PERFORMANCE
switches; identical to self_supervision_task with the switches off).  Each run of each mode is
a fresh Python process, so its peak memory and thread settings are its own.  Prints a table and
writes every number (per-iteration times included) as JSON.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

MODES = ("step", "data", "plain", "reference")
SIZE_TRANSFORMS = ("Resize", "CenterCrop", "RandomResizedCrop", "RandomCrop", "AASAERandomGaussianBlur")


# ----------------------------------------------------------------------------------------- config


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="pretrain/aasae/quickstart", help="VISSL config name (config=...)")
    p.add_argument("--depth", type=int, help="encoder depth: MODEL.TRUNK.AASAE_RESNET.DEPTH")
    p.add_argument("--decoder-depth", type=int, help="MODEL.AASAE.DECODER_DEPTH")
    p.add_argument("--resolution", type=int, help="MODEL.AASAE.INPUT_HEIGHT; transform sizes scale with it")
    p.add_argument("--batch-size", type=int, help="DATA.TRAIN.BATCHSIZE_PER_REPLICA")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: AASAE.PERFORMANCE.BF16_AUTOCAST"
    )
    p.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="AASAE.PERFORMANCE.CHANNELS_LAST (default auto: the run's own decision)",
    )
    p.add_argument(
        "--fused-optimizer",
        choices=("auto", "on", "off"),
        default="auto",
        help="AASAE.PERFORMANCE.FUSED_OPTIMIZER (default auto)",
    )
    p.add_argument("--compile", action="store_true", help="AASAE.PERFORMANCE.COMPILE")
    p.add_argument("--workers", type=int, help="DATA.NUM_DATALOADER_WORKERS (default: the config's)")
    p.add_argument(
        "--threads", type=int, help="torch threads of the training process (default: as the launcher, cores / ranks)"
    )
    p.add_argument("--metrics-frequency", type=int, help="AASAE.METRICS.LOG_FREQUENCY (default: the config's)")
    p.add_argument(
        "--warmup", type=int, default=2, help="iterations not timed (worker start-up, allocator, compilation)"
    )
    p.add_argument("--iterations", type=int, default=8, help="timed iterations of step and plain")
    p.add_argument("--data-batches", type=int, help="timed batches of the data pipeline alone (default 4 x iterations)")
    p.add_argument("--repeats", type=int, default=1, help="fresh-process runs of each mode")
    p.add_argument("--modes", default="step,data,plain", help="comma-separated subset of step,data,plain,reference")
    p.add_argument(
        "--fake-data",
        type=int,
        metavar="N",
        help="write N random images (at least as many as the run reads) in the config's data format and train on them",
    )
    p.add_argument("--json", help="write the results here")
    p.add_argument("--_child", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--_out", help=argparse.SUPPRESS)
    p.add_argument("--_data-root", help=argparse.SUPPRESS)
    args, overrides = p.parse_known_args(argv)
    bad = [o for o in overrides if o.startswith("-")]
    if bad:
        p.error(f"unknown option(s) {bad}")
    args.overrides = overrides
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in args.modes:
        if mode not in MODES:
            p.error(f"--modes: {mode!r} is not one of {list(MODES)}")
    if args.data_batches is None:
        args.data_batches = 4 * args.iterations
    if args.iterations < 1 or args.warmup < 0 or args.repeats < 1:
        p.error("--iterations and --repeats must be >= 1, --warmup >= 0")
    return args


SWITCH = {"auto": "auto", "on": "True", "off": "False"}


def hydra_overrides(args, num_samples: int, checkpoint_dir: str) -> List[str]:
    o = [f"config={args.config}"]
    if args.depth is not None:
        o.append(f"config.MODEL.TRUNK.AASAE_RESNET.DEPTH={args.depth}")
    if args.decoder_depth is not None:
        o.append(f"config.MODEL.AASAE.DECODER_DEPTH={args.decoder_depth}")
    if args.batch_size is not None:
        o.append(f"config.DATA.TRAIN.BATCHSIZE_PER_REPLICA={args.batch_size}")
    if args.workers is not None:
        o.append(f"config.DATA.NUM_DATALOADER_WORKERS={args.workers}")
    gpu = args.device == "cuda"
    o += [
        f"config.MACHINE.DEVICE={'gpu' if gpu else 'cpu'}",
        f"config.DISTRIBUTED.BACKEND={'nccl' if gpu else 'gloo'}",
        "config.DISTRIBUTED.NUM_NODES=1",
        "config.DISTRIBUTED.NUM_PROC_PER_NODE=1",
        "++config.TRAINER.TASK_NAME=aasae_task",
        f"++config.AASAE.PERFORMANCE.BF16_AUTOCAST={args.precision == 'bf16'}",
        f"++config.AASAE.PERFORMANCE.CHANNELS_LAST={SWITCH[args.channels_last]}",
        f"++config.AASAE.PERFORMANCE.FUSED_OPTIMIZER={SWITCH[args.fused_optimizer]}",
        f"++config.AASAE.PERFORMANCE.COMPILE={bool(args.compile)}",
        f"config.DATA.TRAIN.DATA_LIMIT={num_samples}",
        "config.OPTIMIZER.num_epochs=1",
        "config.TEST_MODEL=False",
        f"config.CHECKPOINT.DIR={checkpoint_dir}",
        "config.CHECKPOINT.AUTO_RESUME=False",
    ]
    if args.metrics_frequency is not None:
        o.append(f"++config.AASAE.METRICS.LOG_FREQUENCY={args.metrics_frequency}")
    return o + list(args.overrides)


def set_resolution(config, pixels: int) -> None:
    """MODEL.AASAE.INPUT_HEIGHT = pixels; every size in the AASAEViews lists scaled by the same factor."""
    old = int(config.MODEL.AASAE.INPUT_HEIGHT)
    config.MODEL.AASAE.INPUT_HEIGHT = pixels
    for entry in config.DATA.TRAIN.TRANSFORMS:
        for key in ("original", "augmented"):
            for t in entry.get(key) or []:
                if t.get("name") in SIZE_TRANSFORMS and "size" in t:
                    t["size"] = max(1, round(int(t["size"]) * pixels / old))


def compose_config(args, num_samples: int, checkpoint_dir: str, check: bool = True):
    import vissl_aasae  # noqa: F401
    import vissl_aasae.trainer  # noqa: F401  (registers aasae_task)
    from vissl_aasae.config_check import check_config
    from vissl_aasae.launcher import compose

    cli, config = compose(hydra_overrides(args, num_samples, checkpoint_dir))
    if args.resolution is not None:
        set_resolution(config, args.resolution)
    if args._data_root:
        config.DATA.TRAIN.DATA_PATHS = [args._data_root]
        if config.DATA.TRAIN.get("HOLD_OUT"):
            config.DATA.TRAIN.HOLD_OUT = 0  # the fake data are as many images as the run reads
    if check:
        check_config(config)
    return cli, config


def samples_needed(args, mode: str, batch: int, workers: int) -> int:
    if mode == "data":
        return batch * (data_warmup(args, workers) + args.data_batches)
    return batch * (args.warmup + args.iterations)


def data_warmup(args, workers: int) -> int:
    # the first batches come from workers that started together: skip one per worker
    return max(args.warmup, workers + 1)


# ------------------------------------------------------------------------------------- fake data


def write_fake_data(config, root: Path, n: int) -> str:
    """N random images in the on-disk format of DATA.TRAIN's first source; returns its DATA_PATHS entry."""
    import pickle

    import numpy as np
    from PIL import Image

    source, name = config.DATA.TRAIN.DATA_SOURCES[0], config.DATA.TRAIN.DATASET_NAMES[0]
    rng = np.random.default_rng(0)
    if source == "aasae_array" and name == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        per = -(-n // 5)
        for i in range(1, 6):
            data = rng.integers(0, 256, (per, 3 * 32 * 32), dtype=np.uint8)
            with open(folder / f"data_batch_{i}", "wb") as f:
                pickle.dump({"data": data, "labels": [0] * per}, f)
        with open(folder / "test_batch", "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (5, 3072), dtype=np.uint8), "labels": [0] * 5}, f)
        return str(root)
    if source == "aasae_array" and name in ("stl10", "stl10_unlabeled"):
        folder = root / "stl10_binary"
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("train", "test", "unlabeled"):
            rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8).tofile(folder / f"{split}_X.bin")
            if split != "unlabeled":
                np.ones(n, dtype=np.uint8).tofile(folder / f"{split}_y.bin")
        return str(root)
    if source == "disk_folder":
        # ImageNet-like JPEGs (500 x 375, smooth content plus noise, quality 90): decoding cost included
        for c in range(2):
            (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((500, 375), Image.BICUBIC)
            noisy = np.clip(np.asarray(small, dtype=np.int16) + rng.integers(-20, 21, (375, 500, 3)), 0, 255)
            Image.fromarray(noisy.astype(np.uint8)).save(root / f"class{i % 2}" / f"{i:06d}.jpg", quality=90)
        return str(root)
    raise SystemExit(f"--fake-data: no fake writer for DATA.TRAIN source {source!r} / dataset {name!r}")


# ----------------------------------------------------------------------------------- measurement


def descendants_cpu_seconds() -> float:
    """CPU time (user + system) of every live descendant of this process: DataLoader workers, which
    forkserver starts as grandchildren.  Linux /proc; 0 elsewhere."""
    parents, times = {}, {}
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[pid] = int(fields[1])
        times[pid] = int(fields[11]) + int(fields[12])
    me, total = os.getpid(), 0
    for pid in times:
        p, seen = parents.get(pid), 0
        while p and p != me and seen < 64:
            p, seen = parents.get(p), seen + 1
        if p == me and pid != me:
            total += times[pid]
    return total / os.sysconf("SC_CLK_TCK")


def minor_faults() -> int:
    """Page faults of this process so far (first touches of memory; slow on some virtual machines)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device) -> Dict[str, float]:
    import torch

    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["peak_cuda_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["peak_cuda_reserved_mib"] = torch.cuda.max_memory_reserved(device) / 2**20
    return out


def thread_count(args, config) -> int:
    from vissl_aasae.trainer.cpu import rank_threads

    return args.threads or rank_threads(config)


def make_step_timer(device):
    import torch
    from classy_vision.hooks import ClassyHook

    class StepTimer(ClassyHook):
        """Wall time between consecutive on_step hooks, and trunk forwards per iteration."""

        on_forward = on_loss_and_meter = on_backward = on_update = ClassyHook._noop
        on_phase_end = on_end = ClassyHook._noop

        def __init__(self):
            super().__init__()
            self.records, self.trunk_calls, self.last = [], 0, None

        def _count(self, module, args):
            self.trunk_calls += 1

        def on_start(self, task):
            self.batch_size = task.config.DATA.TRAIN.BATCHSIZE_PER_REPLICA
            task.base_model.trunk.register_forward_pre_hook(self._count)

        def on_phase_start(self, task):
            sync(device)
            self.last, self.last_cpu, self.trunk_calls = time.perf_counter(), time.process_time(), 0
            self.last_workers_cpu, self.last_faults = descendants_cpu_seconds(), minor_faults()

        def on_step(self, task):
            sync(device)
            now, cpu, workers_cpu = time.perf_counter(), time.process_time(), descendants_cpu_seconds()
            # task.iteration was advanced after the step: the step itself ran as iteration - 1,
            # the number the metrics hook and VISSL's logs use
            self.records.append(
                {
                    "iteration": task.iteration - 1,
                    "seconds": now - self.last,
                    "cpu_seconds": cpu - self.last_cpu,
                    "workers_cpu_seconds": max(0.0, workers_cpu - self.last_workers_cpu),
                    "minor_faults": minor_faults() - self.last_faults,
                    "trunk_forwards": self.trunk_calls,
                    "torch_threads": torch.get_num_threads(),
                }
            )
            self.last, self.last_cpu, self.last_workers_cpu, self.trunk_calls = now, cpu, workers_cpu, 0
            self.last_faults = minor_faults()

    return StepTimer()


def run_step(args, config, device) -> Dict:
    import torch
    from vissl.utils.distributed_launcher import launch_distributed

    from vissl_aasae.hooks import aasae_hook_generator

    timer = make_step_timer(device)
    threads = thread_count(args, config)

    def hook_generator(cfg):
        hooks = aasae_hook_generator(cfg)  # as the launcher: sets torch threads to cores / ranks
        torch.set_num_threads(threads)
        return hooks + [timer]

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    launch_distributed(cfg=config, node_id=0, engine_name="train", hook_generator=hook_generator)
    records = timer.records
    metrics_file = Path(config.CHECKPOINT.DIR) / "aasae_metrics.json"
    logged = set()
    if metrics_file.exists():
        logged = {json.loads(line)["iteration"] for line in metrics_file.read_text().splitlines() if line.strip()}
    for r in records:
        r["metrics_logged"] = r["iteration"] in logged
    return summarize(records[args.warmup :], config.DATA.TRAIN.BATCHSIZE_PER_REPLICA, threads=threads) | {
        "warmup_records": records[: args.warmup],
        "metrics": metrics_split(records[args.warmup :]),
    }


def metrics_split(records: List[Dict]) -> Dict:
    """Iterations on which the metrics hook logged versus the others: time and trunk forwards."""
    out = {}
    for name, group in (
        ("logged", [r for r in records if r["metrics_logged"]]),
        ("not_logged", [r for r in records if not r["metrics_logged"]]),
    ):
        out[name] = {
            "iterations": [r["iteration"] for r in group],
            "trunk_forwards": sorted({r["trunk_forwards"] for r in group}),
            "mean_seconds": statistics.fmean(r["seconds"] for r in group) if group else None,
        }
    return out


def run_data(args, config, device) -> Dict:
    import torch
    import torch.distributed as dist
    from vissl.data import build_dataloader, build_dataset

    threads = thread_count(args, config)
    torch.set_num_threads(threads)
    # a one-process group, so that VISSL picks the same sampler as in training
    init_file = tempfile.mktemp(prefix="throughput_pg_")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", world_size=1, rank=0)
    workers = int(config.DATA.NUM_DATALOADER_WORKERS)
    loader = build_dataloader(
        dataset=build_dataset(cfg=config, split="TRAIN"),
        dataset_config=config.DATA.TRAIN,
        num_dataloader_workers=workers,
        pin_memory=config.DATA.PIN_MEMORY,
        multi_processing_method=config.MULTI_PROCESSING_METHOD,
        device=device,
        sampler_seed=config.SEED_VALUE,
        split="train",
    )
    batch = config.DATA.TRAIN.BATCHSIZE_PER_REPLICA
    records, last, last_cpu, last_workers = [], time.perf_counter(), time.process_time(), descendants_cpu_seconds()
    for i, sample in enumerate(loader):
        sync(device)
        now, cpu, workers_cpu = time.perf_counter(), time.process_time(), descendants_cpu_seconds()
        records.append(
            {
                "iteration": i,
                "seconds": now - last,
                "cpu_seconds": cpu - last_cpu,
                "workers_cpu_seconds": max(0.0, workers_cpu - last_workers),
                "images": int(sample["data"][0].shape[0]),
            }
        )
        last, last_cpu, last_workers = now, cpu, workers_cpu
    skip = data_warmup(args, workers)
    del loader
    dist.destroy_process_group()
    return summarize(records[skip:], batch, threads=threads) | {"warmup_records": records[:skip], "workers": workers}


def run_plain(args, config, device) -> Dict:
    import torch
    from classy_vision.losses import build_loss
    from vissl.models import build_model

    from vissl_aasae.models.posterior import posterior_of
    from vissl_aasae.settings import MethodSettings, PerformanceSettings
    from vissl_aasae.trainer.aasae_performance import apply_performance_settings

    threads = thread_count(args, config)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    settings = PerformanceSettings.from_config(config).resolved(device, bool(config.MODEL.AMP_PARAMS.USE_AMP))
    model = apply_performance_settings(build_model(config.MODEL, config.OPTIMIZER), settings, device).to(device).train()
    original_pass = MethodSettings.from_config(config).original_image_pass
    loss_fn = build_loss(config.LOSS).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=1e-4,
        betas=tuple(config.OPTIMIZER.betas),
        weight_decay=config.OPTIMIZER.weight_decay,
        fused=settings.fused_optimizer or None,
    )
    batch, side = config.DATA.TRAIN.BATCHSIZE_PER_REPLICA, int(config.MODEL.AASAE.INPUT_HEIGHT)
    x = torch.randn(batch, 3, side, side, device=device)
    target = torch.randn(batch, 3, side, side, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    records = []
    for i in range(args.warmup + args.iterations):
        sync(device)
        start, start_cpu, faults = time.perf_counter(), time.process_time(), minor_faults()
        optimizer.zero_grad()
        if original_pass:  # as aasae_task: BN statistics see the original images too
            posterior_of(model, target)
        output = model(x)
        loss = loss_fn(output[0] if len(output) == 1 else output, target)  # as VISSL's step unwraps it
        loss.backward()
        optimizer.step()
        float(loss)  # VISSL's step also reads the loss value every iteration
        sync(device)
        records.append(
            {
                "iteration": i,
                "seconds": time.perf_counter() - start,
                "cpu_seconds": time.process_time() - start_cpu,
                "minor_faults": minor_faults() - faults,
            }
        )
    out = summarize(records[args.warmup :], batch, threads=threads) | {"warmup_records": records[: args.warmup]}
    if args.compile:
        out["compile_seconds_first_iteration"] = records[0]["seconds"]
    return out


def run_reference(args, config, device) -> Dict:
    """The authors' per-step work (see the module doc) on the model the config builds."""
    import math

    import torch
    import torch.nn.functional as F
    import torchvision
    from vissl.models import build_model

    threads = thread_count(args, config)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(config.MODEL, config.OPTIMIZER).to(device).train()
    trunk, projection, decoder_head = model.trunk, model.heads[0], model.heads[1]
    log_scale = decoder_head.log_scale
    kl_coeff = float(config.LOSS.aasae_loss.get("kl_coeff", 0.0))
    optimizer = torch.optim.Adam(
        model.parameters(), lr=1e-4, betas=tuple(config.OPTIMIZER.betas), weight_decay=config.OPTIMIZER.weight_decay
    )
    batch, side = config.DATA.TRAIN.BATCHSIZE_PER_REPLICA, int(config.MODEL.AASAE.INPUT_HEIGHT)
    x = torch.randn(batch, 3, side, side, device=device)
    original = torch.randn(batch, 3, side, side, device=device)
    normal = torch.distributions.Normal

    def encode(images):
        h = trunk(images, [])[0]
        hidden = projection.mlp(h)
        return projection.fc_mu(hidden), projection.fc_log_var(hidden)

    def sample(mu, log_var):
        std = torch.exp(log_var / 2.0) + 1e-6
        p, q = normal(torch.zeros_like(mu), torch.ones_like(std)), normal(mu, std)
        return p, q, q.rsample()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    records = []
    for i in range(args.warmup + args.iterations):
        sync(device)
        start, start_cpu, faults = time.perf_counter(), time.process_time(), minor_faults()
        with torch.no_grad():
            mu_orig, log_var_orig = encode(original)
        mu, log_var = encode(x)
        p, q, z = sample(mu, log_var)
        kl = torch.distributions.kl.kl_divergence(q, p).sum(-1)
        log_pz, log_qz = p.log_prob(z).sum(-1), q.log_prob(z).sum(-1)
        with torch.no_grad():
            _, q_orig, z_orig = sample(mu_orig, log_var_orig)
        kl_aug = torch.distributions.kl.kl_divergence(q, q_orig).sum(-1)
        cos_sim = F.cosine_similarity(z_orig, z, dim=1, eps=1e-6)
        x_hat = decoder_head.decoder(z)
        log_pxz = normal(x_hat, torch.exp(log_scale / 2.0) + 1e-6).log_prob(original).sum(dim=(1, 2, 3))
        grid = torchvision.utils.make_grid(x_hat)  # noqa: F841  (built every step by the reference)
        elbo = (kl - log_pxz).mean()
        loss = (kl_coeff * kl - log_pxz).mean()
        log_px = torch.logsumexp((log_pxz + log_pz - log_qz).unsqueeze(1), dim=1).mean() - math.log(1)
        bpd = -log_px / (3 * side * side * math.log(2))
        logs = {  # noqa: F841  (the reference's logged values, computed every step)
            "kl": kl.mean(),
            "elbo": elbo,
            "bpd": bpd,
            "cos_sim": cos_sim.mean(),  # noqa: F841
            "kl_augmentation": kl_aug.mean(),
            "log_px": log_px,
            "log_scale": log_scale.item(),
        }
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sync(device)
        records.append(
            {
                "iteration": i,
                "seconds": time.perf_counter() - start,
                "cpu_seconds": time.process_time() - start_cpu,
                "minor_faults": minor_faults() - faults,
            }
        )
    return summarize(records[args.warmup :], batch, threads=threads) | {"warmup_records": records[: args.warmup]}


def summarize(records: List[Dict], batch: int, **extra) -> Dict:
    seconds = [r["seconds"] for r in records]
    if not seconds:
        raise SystemExit("no timed iterations: raise --iterations / --data-batches or lower --warmup")
    images = sum(r.get("images", batch) for r in records)
    return {
        "images_per_s": images / sum(seconds),
        "images_per_s_median_iteration": batch / statistics.median(seconds),
        "images_per_s_best_iteration": batch / min(seconds),
        "seconds_per_iteration": {
            "mean": statistics.fmean(seconds),
            "median": statistics.median(seconds),
            "min": min(seconds),
            "max": max(seconds),
        },
        # CPU time of this process (all its threads) and of its DataLoader workers
        "cpu_seconds_per_iteration": statistics.fmean(r["cpu_seconds"] for r in records),
        "workers_cpu_seconds_per_iteration": statistics.fmean(r.get("workers_cpu_seconds", 0.0) for r in records),
        # images per CPU-second (process + workers): what the step would reach with the cores to
        # itself, hardly moved by other load on a shared machine
        "images_per_cpu_s": images / sum(r["cpu_seconds"] + r.get("workers_cpu_seconds", 0.0) for r in records),
        "timed_iterations": len(seconds),
        "records": records,
        **extra,
    }


def resolved_settings(config) -> Dict:
    from vissl_aasae.settings import PerformanceSettings

    trunk = config.MODEL.TRUNK.AASAE_RESNET
    return {
        "trunk": f"{config.MODEL.TRUNK.NAME} depth {trunk.DEPTH} x{trunk.WIDTH_MULTIPLIER} stem {trunk.STEM}",
        "decoder_depth": config.MODEL.AASAE.DECODER_DEPTH or trunk.DEPTH,
        "resolution": int(config.MODEL.AASAE.INPUT_HEIGHT),
        "batch_size": int(config.DATA.TRAIN.BATCHSIZE_PER_REPLICA),
        "dataloader_workers": int(config.DATA.NUM_DATALOADER_WORKERS),
        "pin_memory": bool(config.DATA.PIN_MEMORY),
        "task": config.TRAINER.TASK_NAME,
        "train_step": config.TRAINER.TRAIN_STEP_NAME,
        "performance": dict(PerformanceSettings.from_config(config).__dict__),
        "performance_resolved": dict(
            PerformanceSettings.from_config(config)
            .resolved(
                __import__("torch").device("cuda" if config.MACHINE.DEVICE == "gpu" else "cpu"),
                bool(config.MODEL.AMP_PARAMS.USE_AMP),
            )
            .__dict__
        ),
    }


def child_main(args) -> None:
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    with tempfile.TemporaryDirectory(prefix="throughput_") as tmp:
        batch_guess = args.batch_size
        # compose once to learn the batch size and workers, then with the right DATA_LIMIT
        _, probe = compose_config(args, -1, tmp, check=False)
        batch = batch_guess or probe.DATA.TRAIN.BATCHSIZE_PER_REPLICA
        workers = int(probe.DATA.NUM_DATALOADER_WORKERS)
        _, config = compose_config(
            args, samples_needed(args, args._child, batch, workers), os.path.join(tmp, "checkpoints")
        )
        load_before = os.getloadavg()
        runner = {"step": run_step, "data": run_data, "plain": run_plain, "reference": run_reference}[args._child]
        result = runner(args, config, device)
        result.update(peak_memory(device), load_average_before=load_before, load_average_after=os.getloadavg())
        result["resolved"] = resolved_settings(config)
    Path(args._out).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------- parent


def environment(device: str) -> Dict:
    import importlib.metadata as md

    import torch

    versions = {"python": platform.python_version()}
    for package in ("torch", "torchvision", "vissl", "classy_vision", "numpy", "pillow", "hydra-core"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    hardware = {"cpu": cpu, "cpu_cores": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if device == "cuda" and torch.cuda.is_available():
        hardware["gpu"] = torch.cuda.get_device_name()
        versions["cuda"] = torch.version.cuda
        versions["cudnn"] = torch.backends.cudnn.version()
    return {"hardware": hardware, "software": versions}


def run_child(argv: List[str], mode: str, data_root) -> Dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--_child", mode, "--_out", out]
    if data_root:
        cmd += ["--_data-root", data_root]
    started = time.perf_counter()
    # the child's output goes to a file, not a pipe: DataLoader workers and the forkserver it
    # starts must not keep this process waiting if the child dies
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            log.seek(0)
            sys.stderr.write(log.read()[-12000:])
            raise SystemExit(f"throughput: the {mode} run failed (exit {proc.returncode})")
    result = json.loads(Path(out).read_text())
    os.unlink(out)
    result["process_seconds"] = time.perf_counter() - started
    return result


def aggregate(runs: List[Dict]) -> Dict:
    rates = [r["images_per_s"] for r in runs]
    medians = [r["images_per_s_median_iteration"] for r in runs]
    keys = [k for k in ("peak_rss_mib", "peak_cuda_allocated_mib", "peak_cuda_reserved_mib") if k in runs[0]]
    return {
        "images_per_s": statistics.median(rates),
        "images_per_s_min": min(rates),
        "images_per_s_max": max(rates),
        "images_per_s_median_iteration": statistics.median(medians),
        "images_per_cpu_s": statistics.median(r["images_per_cpu_s"] for r in runs),
        # the least disturbed run / iteration: the estimates least moved by other load
        "images_per_s_best_iteration": max(r["images_per_s_best_iteration"] for r in runs),
        **{k: max(r[k] for r in runs) for k in keys},
        "load_average_1min": [r["load_average_before"][0] for r in runs] + [runs[-1]["load_average_after"][0]],
        "resolved": runs[0]["resolved"],
        "runs": runs,
    }


def table(summary: Dict) -> str:
    rows = [("mode", "img/s", "min-max", "median it.", "best it.", "img/CPU-s", "s/iter", "peak MiB", "load 1m")]
    for mode, s in summary["results"].items():
        mem = s.get("peak_cuda_allocated_mib", s["peak_rss_mib"])
        per_iter = statistics.median(r["seconds_per_iteration"]["median"] for r in s["runs"])
        loads = s["load_average_1min"]
        rows.append(
            (
                mode,
                f"{s['images_per_s']:.1f}",
                f"{s['images_per_s_min']:.1f}-{s['images_per_s_max']:.1f}",
                f"{s['images_per_s_median_iteration']:.1f}",
                f"{s['images_per_s_best_iteration']:.1f}",
                f"{s['images_per_cpu_s']:.2f}",
                f"{per_iter:.3f}",
                f"{mem:.0f}" + (" (cuda)" if "peak_cuda_allocated_mib" in s else " (rss)"),
                f"{min(loads):.2f}-{max(loads):.2f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for name, value in summary["ratios"].items():
        lines.append(f"{name}: {value:.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args._child:
        child_main(args)
        return 0
    forwarded, skip = [], False
    for a in argv:  # the children get every option but --json
        if not skip and not a.startswith("--json"):
            forwarded.append(a)
        skip = a == "--json"
    started = datetime.datetime.now(datetime.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="throughput_data_") as data_tmp:
        data_root = None
        if args.fake_data:
            args._data_root = data_tmp  # composes with HOLD_OUT 0, as the children will
            _, config = compose_config(args, -1, data_tmp, check=False)
            args._data_root = None
            # at least as many images as the longest mode reads (DATA_LIMIT must not exceed the data)
            batch = args.batch_size or config.DATA.TRAIN.BATCHSIZE_PER_REPLICA
            workers = int(config.DATA.NUM_DATALOADER_WORKERS)
            needed = max(samples_needed(args, mode, batch, workers) for mode in args.modes)
            data_root = write_fake_data(config, Path(data_tmp), max(args.fake_data, needed))
        # modes interleaved (step, data, plain, step, ...) so that load from other processes
        # on a shared machine falls on all of them alike
        runs = {mode: [] for mode in args.modes}
        for repeat in range(args.repeats):
            for mode in args.modes:
                runs[mode].append(run_child(forwarded, mode, data_root))
                r = runs[mode][-1]
                print(
                    f"[{repeat + 1}/{args.repeats}] {mode}: {r['images_per_s']:.2f} img/s, "
                    f"load {r['load_average_before'][0]:.2f}",
                    flush=True,
                )
        results = {mode: aggregate(mode_runs) for mode, mode_runs in runs.items()}
    ratios = {}
    if "step" in results and "plain" in results:
        ratios["step / plain (img/s)"] = results["step"]["images_per_s"] / results["plain"]["images_per_s"]
        ratios["step / plain (median iteration)"] = (
            results["step"]["images_per_s_median_iteration"] / results["plain"]["images_per_s_median_iteration"]
        )
        ratios["step / plain (best run)"] = results["step"]["images_per_s_max"] / results["plain"]["images_per_s_max"]
        ratios["step / plain (best iteration)"] = (
            results["step"]["images_per_s_best_iteration"] / results["plain"]["images_per_s_best_iteration"]
        )
        ratios["step / plain (img per CPU-s)"] = (
            results["step"]["images_per_cpu_s"] / results["plain"]["images_per_cpu_s"]
        )
    if "step" in results and "reference" in results:
        ratios["step / reference (img/s)"] = results["step"]["images_per_s"] / results["reference"]["images_per_s"]
        ratios["step / reference (img per CPU-s)"] = (
            results["step"]["images_per_cpu_s"] / results["reference"]["images_per_cpu_s"]
        )
    if "plain" in results and "reference" in results:
        ratios["plain / reference (img/s)"] = results["plain"]["images_per_s"] / results["reference"]["images_per_s"]
    if "step" in results and "data" in results:
        ratios["data / step (img/s)"] = results["data"]["images_per_s"] / results["step"]["images_per_s"]
        ratios["data / step (best run)"] = results["data"]["images_per_s_max"] / results["step"]["images_per_s_max"]
    summary = {
        "command": " ".join(["python benchmarks/throughput.py", *argv]),
        "date": started.isoformat(timespec="seconds"),
        **environment(args.device),
        "settings": {
            k: getattr(args, k)
            for k in (
                "config",
                "depth",
                "decoder_depth",
                "resolution",
                "batch_size",
                "device",
                "precision",
                "channels_last",
                "compile",
                "workers",
                "threads",
                "metrics_frequency",
                "warmup",
                "iterations",
                "data_batches",
                "repeats",
                "fake_data",
                "overrides",
            )
        },
        "results": results,
        "ratios": ratios,
    }
    print(table(summary))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
