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

Speed against the machine's own limit, for step, plain and reference:

- FLOPs per image: counted once per config (a fresh process, ``torch.utils.flop_counter``) on one
  training step of the model ``aasae_task`` builds from the config, its original-image pass made by
  the task's own forward pre-hook: the pass, forward + loss, backward (the optimizer's elementwise
  work counts 0, as everything but matmuls and convolutions does).  The step, plain and reference
  runs also count one extra, untimed iteration of their own loop (``flops_per_image_counted``):
  the same work, checked.
- the peak of this machine, measured in each step / plain / reference process right after its
  timed iterations (``--peak-seconds`` each; the speed of a shared machine drifts from one minute
  to the next): a large matmul and a forward + backward of the convolution shape that carries most
  of the model's FLOPs, at the config's batch, in fp32 and, where the device has it, bf16.  On a
  GPU fp32 convolutions run in TF32 (PyTorch's default for cuDNN) and matmuls do not.
- achieved GFLOP/s = FLOPs per image x images/s / 1e9, and its fraction of the peak its own process
  measured, the larger of matmul and convolution of the run's precision ("% peak": model FLOPs
  utilisation against a measured, not a datasheet, peak), and of the convolution's ("% conv"); the
  median over the runs.  On a GPU whose name is known the ratio to the datasheet's dense peak is
  printed beside it.

``--precision fp32,bf16`` and ``--compare-compile`` run each mode once per variant, interleaved
within each repeat (the reference and data modes once: they have no switches); compilation's cost
is reported apart from the steady state (``warmup_excess_seconds``: the untimed iterations' time
beyond the timed median).  ``--summarize A.json B.json ...`` prints the FLOP table of earlier runs.

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
from typing import Dict, List, Optional

MODES = ("step", "data", "plain", "reference")
MODEL_MODES = ("step", "plain", "reference")  # the modes that train the model (FLOPs, peak fractions)
PRECISIONS = ("fp32", "bf16")
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
        "--precision",
        default="fp32",
        help="fp32 | bf16 (AASAE.PERFORMANCE.BF16_AUTOCAST) | fp32,bf16: each mode with both, interleaved",
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
    p.add_argument(
        "--compare-compile",
        action="store_true",
        help="step and plain each uncompiled and compiled (AASAE.PERFORMANCE.COMPILE), interleaved",
    )
    p.add_argument(
        "--compile-cache",
        choices=("fresh", "shared"),
        default="fresh",
        help="fresh: every compiled run gets an empty inductor cache (a first run's compile time; default); "
        "shared: PyTorch's usual cache (TORCHINDUCTOR_CACHE_DIR), warm after the first run",
    )
    p.add_argument(
        "--peak-seconds",
        type=float,
        default=1.0,
        help="length of each peak microbenchmark (matmul, convolution; per precision); 0: no peak",
    )
    p.add_argument("--summarize", nargs="+", metavar="JSON", help="print the FLOP table of these result files")
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="plain and reference: N more iterations under torch.profiler, their time split by kind of op",
    )
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
    p.add_argument("--_child", choices=MODES + ("flops",), help=argparse.SUPPRESS)
    p.add_argument("--_variant", help=argparse.SUPPRESS)  # precision,compiled for this child
    p.add_argument("--_conv", help=argparse.SUPPRESS)  # the peak child's convolution (JSON)
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
    args.precisions = [v.strip() for v in args.precision.split(",") if v.strip()]
    if not args.precisions or any(v not in PRECISIONS for v in args.precisions):
        p.error(f"--precision: {args.precision!r}: one or more of {list(PRECISIONS)}, comma-separated")
    if args.compile and args.compare_compile:
        p.error("--compile and --compare-compile: choose one")
    if args._variant:  # a child runs one variant
        precision, compiled = args._variant.split(",")
        args.precisions, args.compile = [precision], compiled == "1"
    args.precision = args.precisions[0]
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
    # the step runs one more, untimed iteration: the one whose FLOPs it counts
    return batch * (args.warmup + args.iterations + (1 if mode == "step" else 0))


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


def make_step_timer(device, timed: int, count_flops: bool):
    """The hook that times VISSL's step; the iteration after the first ``timed`` ones is not timed
    but, with ``count_flops``, run under ``FlopCounterMode`` (``counted_flops``)."""
    import torch
    from classy_vision.hooks import ClassyHook
    from torch.utils.flop_counter import FlopCounterMode

    class StepTimer(ClassyHook):
        """Wall time between consecutive on_step hooks, and trunk forwards per iteration."""

        on_forward = on_loss_and_meter = on_backward = on_update = ClassyHook._noop

        def __init__(self):
            super().__init__()
            self.records, self.trunk_calls, self.last = [], 0, None
            self.counter, self.counted_flops, self.extra = None, None, False

        def _close_counter(self):
            if self.counter is not None:
                self.counter.__exit__(None, None, None)
                self.counted_flops, self.counter = self.counter.get_total_flops(), None

        def on_phase_end(self, task):
            self._close_counter()

        on_end = on_phase_end

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
            if self.extra:  # the counted iteration ended: not timed
                self._close_counter()
                self.extra = False
                self.last = None
                return
            now, cpu, workers_cpu = time.perf_counter(), time.process_time(), descendants_cpu_seconds()
            if self.last is None:
                return
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
            if len(self.records) == timed:
                self.extra = True
                if count_flops:
                    self.counter = FlopCounterMode(display=False)
                    self.counter.__enter__()

    return StepTimer()


def run_step(args, config, device) -> Dict:
    import torch
    from vissl.utils.distributed_launcher import launch_distributed

    from vissl_aasae.hooks import aasae_hook_generator

    timer = make_step_timer(device, args.warmup + args.iterations, count_flops=not args.compile)
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
    batch = config.DATA.TRAIN.BATCHSIZE_PER_REPLICA
    return summarize(records[args.warmup :], batch, threads=threads) | {
        "warmup_records": records[: args.warmup],
        "metrics": metrics_split(records[args.warmup :]),
        "flops_per_image_counted": None if timer.counted_flops is None else timer.counted_flops / batch,
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

    def iteration():
        optimizer.zero_grad()
        if original_pass:  # as aasae_task: BN statistics see the original images too
            posterior_of(model, target)
        output = model(x)
        loss = loss_fn(output[0] if len(output) == 1 else output, target)  # as VISSL's step unwraps it
        loss.backward()
        optimizer.step()
        float(loss)  # VISSL's step also reads the loss value every iteration

    # FlopCounterMode is not run through compiled code: a compiled run counts nothing
    return timed_loop(args, iteration, batch, device, threads, count=not args.compile)


def timed_loop(args, iteration, batch: int, device, threads: int, count: bool = True) -> Dict:
    """``warmup + iterations`` calls of ``iteration``, each timed; then, with ``count``, one more
    under FlopCounterMode (``flops_per_image_counted``)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    records = []
    for i in range(args.warmup + args.iterations):
        sync(device)
        start, start_cpu, faults = time.perf_counter(), time.process_time(), minor_faults()
        iteration()
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
    out["flops_per_image_counted"] = None
    if count:
        with FlopCounterMode(display=False) as counter:
            iteration()
        out["flops_per_image_counted"] = counter.get_total_flops() / batch
        if args.profile:
            out["profile"] = profile_split(iteration, args.profile, device)
            by_op = counter.get_flop_counts().get("Global", {})
            conv_flops = sum(n for op, n in by_op.items() if "convolution" in str(op))
            seconds = out["profile"]["seconds_per_iteration"].get("convolution", 0.0)
            if seconds:  # the convolutions' own speed inside the model
                out["profile"]["convolution_gflop_per_s"] = conv_flops / seconds / 1e9
    return out


# kinds of op, by the first pattern in its profiler name (aten::...)
OP_KINDS = (
    ("convolution", ("conv",)),
    ("batch_norm", ("batch_norm",)),
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm")),
    ("optimizer", ("adam", "optimizer")),
    ("copies_and_layout", ("copy_", "contiguous", "to_dense", "clone", "empty_like", "to_mkldnn")),
)


def profile_split(iteration, n: int, device) -> Dict:
    """The self time of every op over ``n`` iterations under torch.profiler, summed by kind
    (:data:`OP_KINDS`, the rest ``other``), per iteration; ``wall``: the iterations' wall time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(n):
            iteration()
        sync(device)
    wall = (time.perf_counter() - start) / n
    split, attr = {}, "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    for event in prof.key_averages():
        name = event.key.lower()
        kind = next((k for k, patterns in OP_KINDS if any(p in name for p in patterns)), "other")
        split[kind] = split.get(kind, 0.0) + getattr(event, attr) / 1e6 / n
    return {"iterations": n, "wall_seconds_per_iteration": wall, "seconds_per_iteration": split}


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

    def iteration():
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

    return timed_loop(args, iteration, batch, device, threads)


# ---------------------------------------------------------------------- FLOPs and the machine's peak

# dense (no sparsity) datasheet peaks in TFLOP/s: NVIDIA's H100 / H200 / A100 data sheets.  fp32 is
# the CUDA-core figure (PyTorch's fp32 matmuls), tf32 the tensor-core one (its fp32 convolutions)
DATASHEET_TFLOPS = {
    "H100 SXM": {"bf16": 989.0, "fp32": 67.0, "tf32": 494.5},
    "H100 PCIe": {"bf16": 756.0, "fp32": 51.0, "tf32": 378.0},
    "H200": {"bf16": 989.0, "fp32": 67.0, "tf32": 494.5},
    "A100": {"bf16": 312.0, "fp32": 19.5, "tf32": 156.0},
}


def datasheet_name(device_name: str):
    """The DATASHEET_TFLOPS entry for a device name as CUDA reports it ('NVIDIA H100 80GB HBM3'), or None."""
    name = (device_name or "").lower()
    if "h200" in name:
        return "H200"
    if "h100" in name:
        if "pcie" in name:
            return "H100 PCIe"
        if "nvl" in name:  # another board (H100 NVL, 94 GB): no entry
            return None
        return "H100 SXM"
    if "a100" in name:
        return "A100"
    return None


def gflop_per_s(flops_per_image: float, images_per_s: float) -> float:
    """Achieved GFLOP/s: FLOPs per image x images per second / 1e9."""
    return flops_per_image * images_per_s / 1e9


def flop_report(flops_per_image: float, images_per_s: float, peak: Optional[Dict], datasheet=None) -> Dict:
    """FLOPs per image, achieved GFLOP/s and its fractions of a measured peak (``peak``: GFLOP/s
    of the run's precision: ``best``, ``matmul``, ``conv``) and of a datasheet peak (TFLOP/s)."""
    achieved = gflop_per_s(flops_per_image, images_per_s)
    out = {"gflop_per_image": flops_per_image / 1e9, "gflop_per_s": achieved}
    for key in ("best", "matmul", "conv"):
        if peak and peak.get(key):
            out["fraction_of_peak" if key == "best" else f"fraction_of_{key}_peak"] = achieved / peak[key]
    for key, tflops in (datasheet or {}).items():
        out[f"fraction_of_datasheet_{key}"] = achieved / (tflops * 1e3)
    return out


def step_flops(model, forward, backward, batch: int) -> Dict:
    """FLOPs (``torch.utils.flop_counter.FlopCounterMode``: matmuls and convolutions; elementwise work
    counts 0) of one training step, per image: ``forward()`` (the model's forward and the loss; what
    the model's own forward pre-hooks run before the forward, i.e. ``aasae_task``'s original-image
    pass, is counted apart), then ``backward(forward's result)``.  Also the convolution shapes
    that ``model`` ran, with the FLOPs each carried (``convolutions``, largest first)."""
    import torch.nn as nn
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    before_forward, convs, open_calls = [], {}, []

    def conv_start(module, args):
        open_calls.append(counter.get_total_flops())

    def conv_end(module, args, output):
        import torch

        flops = counter.get_total_flops() - open_calls.pop()
        x = args[0]
        key = json.dumps(
            {
                "transposed": isinstance(module, nn.ConvTranspose2d),
                "batch": int(x.shape[0]),
                "in_channels": module.in_channels,
                "out_channels": module.out_channels,
                "input_hw": list(x.shape[-2:]),
                "kernel_size": list(module.kernel_size),
                "stride": list(module.stride),
                "padding": list(module.padding),
                "dilation": list(module.dilation),
                "groups": module.groups,
            },
            sort_keys=True,
        )
        entry = convs.setdefault(key, {"calls": 0, "calls_with_grad": 0, "forward_flops": 0})
        entry["calls"] += 1
        entry["calls_with_grad"] += int(torch.is_grad_enabled())
        entry["forward_flops"] += flops
        # forward + backward (input and weight gradients: 2x the forward) where the call needs gradients
        entry["step_flops_estimate"] = entry.get("step_flops_estimate", 0) + flops * (
            3 if torch.is_grad_enabled() else 1
        )

    hooks = [model.register_forward_pre_hook(lambda m, a: before_forward.append(counter.get_total_flops()))]
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            hooks += [m.register_forward_pre_hook(conv_start), m.register_forward_hook(conv_end)]
    try:
        with counter:
            result = forward()
    finally:
        for h in hooks:
            h.remove()
    with FlopCounterMode(display=False) as back:
        backward(result)
    forward_total, backward_total = counter.get_total_flops(), back.get_total_flops()
    pass_flops = before_forward[0] if before_forward else 0
    total = forward_total + backward_total
    by_op = {}
    for c in (counter, back):
        for op, n in c.get_flop_counts().get("Global", {}).items():
            by_op[str(op)] = by_op.get(str(op), 0) + n / batch
    shapes = sorted(
        (
            {**json.loads(k), **v, "share_of_step": v["step_flops_estimate"] / total if total else 0.0}
            for k, v in convs.items()
        ),
        key=lambda c: -c["step_flops_estimate"],
    )
    return {
        "batch": batch,
        "per_image": total / batch,
        "original_pass_per_image": pass_flops / batch,
        "forward_per_image": (forward_total - pass_flops) / batch,
        "backward_per_image": backward_total / batch,
        "by_op_per_image": by_op,
        "convolutions": shapes,
    }


def run_flops(args, config, device) -> Dict:
    """FLOPs of one training step of the model ``aasae_task`` builds from the config (its original-image
    pass made by the task's own forward pre-hook, as in training), on random images, eager."""
    import torch
    from classy_vision.losses import build_loss
    from classy_vision.tasks import TASK_REGISTRY

    torch.manual_seed(0)
    config.AASAE.PERFORMANCE.COMPILE = False  # the model's FLOPs: counted on the eager model
    task = TASK_REGISTRY[config.TRAINER.TASK_NAME].from_config(config)
    model = task._build_model().to(device).train()
    loss_fn = build_loss(config.LOSS).to(device)
    batch, side = config.DATA.TRAIN.BATCHSIZE_PER_REPLICA, int(config.MODEL.AASAE.INPUT_HEIGHT)
    x = torch.randn(batch, 3, side, side, device=device)
    target = torch.randn(batch, 3, side, side, device=device)

    def forward():
        task._pending_originals = target  # what the task's data iterator hands it for each batch
        output = model(x)
        return loss_fn(output[0] if len(output) == 1 else output, target)

    started = time.perf_counter()
    out = step_flops(model, forward, lambda loss: loss.backward(), batch)
    out["original_image_pass"] = bool(getattr(task, "original_image_pass", False))
    out["parameters"] = sum(p.numel() for p in model.parameters())
    out["seconds"] = time.perf_counter() - started
    return out


def bf16_supported(device) -> bool:
    """bfloat16 matmuls/convolutions in hardware: CUDA's check; on CPU oneDNN's (AVX-512 BF16 / AMX)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def timed_rate(fn, flops_per_call: float, device, seconds: float) -> Dict:
    """GFLOP/s of ``fn`` (``flops_per_call`` each call) over about ``seconds`` (at least 3 chunks of
    calls, each ~1/5 of it; the chunks' rates give the spread), after one untimed call."""
    fn()
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    one = time.perf_counter() - start
    per_chunk = max(1, int(seconds / 5 / max(one, 1e-9)))
    rates, calls, elapsed = [], 0, 0.0
    while elapsed < seconds or len(rates) < 3:
        start = time.perf_counter()
        for _ in range(per_chunk):
            fn()
        sync(device)
        dt = time.perf_counter() - start
        rates.append(flops_per_call * per_chunk / dt / 1e9)
        calls, elapsed = calls + per_chunk, elapsed + dt
    return {
        "gflop_per_s": flops_per_call * calls / elapsed / 1e9,
        "chunk_gflop_per_s": rates,
        "calls": calls,
        "seconds": elapsed,
        "flops_per_call": flops_per_call,
    }


def matmul_peak(device, dtype, seconds: float, n: Optional[int] = None) -> Dict:
    """An n x n by n x n matmul (2 n^3 FLOPs): 2048 on CPU, 8192 on a GPU."""
    import torch

    n = n or (8192 if device.type == "cuda" else 2048)
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=dtype)
    return {"n": n} | timed_rate(lambda: torch.mm(a, b, out=out), 2.0 * n**3, device, seconds)


def conv_peak(device, dtype, spec: Dict, seconds: float, channels_last: bool) -> Dict:
    """Forward + backward (input and weight gradients) of one convolution of the shape ``spec``
    (an entry of :func:`step_flops`' ``convolutions``), its FLOPs counted as the model's are."""
    import torch
    import torch.nn as nn
    from torch.utils.flop_counter import FlopCounterMode

    kind = nn.ConvTranspose2d if spec.get("transposed") else nn.Conv2d
    conv = kind(
        spec["in_channels"],
        spec["out_channels"],
        tuple(spec["kernel_size"]),
        stride=tuple(spec["stride"]),
        padding=tuple(spec["padding"]),
        dilation=tuple(spec["dilation"]),
        groups=spec["groups"],
        bias=False,
    ).to(device=device, dtype=dtype)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    conv = conv.to(memory_format=fmt)
    x = torch.randn(spec["batch"], spec["in_channels"], *spec["input_hw"], device=device, dtype=dtype)
    x = x.contiguous(memory_format=fmt).requires_grad_(True)
    grad = torch.randn_like(conv(x))

    def call():
        conv(x).backward(grad)

    with FlopCounterMode(display=False) as counter:
        call()
    return {"shape": spec, "channels_last": channels_last} | timed_rate(
        call, counter.get_total_flops(), device, seconds
    )


def run_peak(args, config, device) -> Dict:
    """This machine's peak, measured now with the training's threads: matmul and the model's
    dominant convolution shape (``--_conv``), fp32 and (where the device has it) bf16."""
    import torch

    from vissl_aasae.settings import PerformanceSettings

    threads = thread_count(args, config)
    torch.set_num_threads(threads)
    settings = PerformanceSettings.from_config(config).resolved(device, bool(config.MODEL.AMP_PARAMS.USE_AMP))
    spec = json.loads(args._conv) if args._conv else None
    dtypes = {"fp32": torch.float32}
    if bf16_supported(device):
        dtypes["bf16"] = torch.bfloat16
    out = {"threads": threads, "seconds_each": args.peak_seconds}
    for name, dtype in dtypes.items():
        entry = {"matmul": matmul_peak(device, dtype, args.peak_seconds)}
        if spec:
            # the layout the run's switches give each precision: CHANNELS_LAST auto is on for bf16
            # (mixed precision) on every device, and for fp32 on the CPU
            layout = settings.channels_last or dtype == torch.bfloat16
            entry["conv"] = conv_peak(device, dtype, spec, args.peak_seconds, layout)
        out[name] = entry
    return out


def aggregate_peak(peaks: List[Dict]) -> Dict:
    """Per precision, the median over the measurements (one after each run) of matmul and conv
    GFLOP/s (with min-max), and ``best``: the median of each measurement's larger of the two."""
    out = {}
    for precision in PRECISIONS:
        runs = [p[precision] for p in peaks if precision in p]
        if not runs:
            continue
        entry = {}
        for bench in ("matmul", "conv"):
            rates = [r[bench]["gflop_per_s"] for r in runs if bench in r]
            if rates:
                entry[bench] = statistics.median(rates)
                entry[f"{bench}_min"], entry[f"{bench}_max"] = min(rates), max(rates)
        entry["best"] = statistics.median(max(r[b]["gflop_per_s"] for b in ("matmul", "conv") if b in r) for r in runs)
        entry["measurements"] = len(runs)
        out[precision] = entry
    return out


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
        runner = {
            "step": run_step,
            "data": run_data,
            "plain": run_plain,
            "reference": run_reference,
            "flops": run_flops,
        }[args._child]
        result = runner(args, config, device)
        result.update(peak_memory(device), load_average_before=load_before, load_average_after=os.getloadavg())
        if args._child in MODEL_MODES and args.peak_seconds > 0:
            # the machine's peak in the same process, right after the timed iterations: on a shared
            # machine whose speed drifts from one minute to the next, each run's fraction of peak
            # compares two measurements seconds apart
            result["peak"] = run_peak(args, config, device)
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


def run_child(argv: List[str], mode: str, data_root, variant=None, extra=(), fresh_compile_cache=False) -> Dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--_child", mode, "--_out", out, *extra]
    if variant is not None:
        cmd += ["--_variant", f"{variant[0]},{int(variant[1])}"]
    if data_root:
        cmd += ["--_data-root", data_root]
    started = time.perf_counter()
    # the child's output goes to a file, not a pipe: DataLoader workers and the forkserver it
    # starts must not keep this process waiting if the child dies
    with tempfile.TemporaryFile("w+") as log, tempfile.TemporaryDirectory(prefix="throughput_compile_") as cache:
        env = dict(os.environ)
        if fresh_compile_cache:  # a first run's compilation: no kernels cached by an earlier run
            env.update(
                TORCHINDUCTOR_CACHE_DIR=os.path.join(cache, "inductor"), TRITON_CACHE_DIR=os.path.join(cache, "triton")
            )
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        if proc.returncode != 0:
            log.seek(0)
            sys.stderr.write(log.read()[-12000:])
            raise SystemExit(f"throughput: the {mode} run failed (exit {proc.returncode})")
    result = json.loads(Path(out).read_text())
    os.unlink(out)
    result["process_seconds"] = time.perf_counter() - started
    return result


def warmup_excess_seconds(run: Dict) -> Optional[float]:
    """The untimed first iterations' time beyond as many timed (median) iterations: start-up of data
    workers and allocator, and compilation where the run compiles."""
    warm = run.get("warmup_records") or []
    if not warm:
        return None
    return sum(r["seconds"] for r in warm) - len(warm) * run["seconds_per_iteration"]["median"]


def aggregate(runs: List[Dict]) -> Dict:
    rates = [r["images_per_s"] for r in runs]
    medians = [r["images_per_s_median_iteration"] for r in runs]
    keys = [k for k in ("peak_rss_mib", "peak_cuda_allocated_mib", "peak_cuda_reserved_mib") if k in runs[0]]
    excess = [e for e in (warmup_excess_seconds(r) for r in runs) if e is not None]
    counted = [r["flops_per_image_counted"] for r in runs if r.get("flops_per_image_counted") is not None]
    return {
        "images_per_s": statistics.median(rates),
        "images_per_s_min": min(rates),
        "images_per_s_max": max(rates),
        "images_per_s_median_iteration": statistics.median(medians),
        "images_per_cpu_s": statistics.median(r["images_per_cpu_s"] for r in runs),
        # the least disturbed run / iteration: the estimates least moved by other load
        "images_per_s_best_iteration": max(r["images_per_s_best_iteration"] for r in runs),
        **{k: max(r[k] for r in runs) for k in keys},
        "warmup_excess_seconds": statistics.median(excess) if excess else None,
        "process_seconds": statistics.median(r["process_seconds"] for r in runs),
        "flops_per_image_counted": counted[0] if counted else None,
        "profile": next((r["profile"] for r in runs if r.get("profile")), None),
        "load_average_1min": [r["load_average_before"][0] for r in runs] + [runs[-1]["load_average_after"][0]],
        "resolved": runs[0]["resolved"],
        "runs": runs,
    }


def run_plan(args) -> List:
    """(result key, mode, precision, compiled) of each child run in one repeat, in order: step and
    plain once per precision and compile setting, each beside the other (interleaved); the
    reference (fp32, eager, NCHW by definition) and the data pipeline once."""
    plan = []
    for mode in args.modes:
        if mode in ("step", "plain"):
            for precision in args.precisions:
                for compiled in (False, True) if args.compare_compile else (args.compile,):
                    key = (
                        mode + (f" {precision}" if len(args.precisions) > 1 else "") + (" compile" if compiled else "")
                    )
                    plan.append((key, mode, precision, compiled))
        elif mode == "reference":
            plan.append((mode, mode, "fp32", False))
        else:
            plan.append((mode, mode, args.precisions[0], args.compile))
    return plan


def mode_of(key: str) -> str:
    return key.split()[0]


def compute_ratios(results: Dict) -> Dict:
    """step / plain, step / reference, plain / reference, data / step for every variant present, and
    compiled / uncompiled and bf16 / fp32 of the same mode."""

    def rate(key, field="images_per_s"):
        return results[key][field]

    ratios = {}
    steps = [k for k in results if mode_of(k) == "step"]
    for sk in steps:
        pk = "plain" + sk[len("step") :]
        if pk in results:
            ratios[f"{sk} / {pk} (img/s)"] = rate(sk) / rate(pk)
            ratios[f"{sk} / {pk} (median iteration)"] = rate(sk, "images_per_s_median_iteration") / rate(
                pk, "images_per_s_median_iteration"
            )
            ratios[f"{sk} / {pk} (best run)"] = rate(sk, "images_per_s_max") / rate(pk, "images_per_s_max")
            ratios[f"{sk} / {pk} (best iteration)"] = rate(sk, "images_per_s_best_iteration") / rate(
                pk, "images_per_s_best_iteration"
            )
            ratios[f"{sk} / {pk} (img per CPU-s)"] = rate(sk, "images_per_cpu_s") / rate(pk, "images_per_cpu_s")
    for key in [k for k in results if mode_of(k) in ("step", "plain")]:
        if "reference" in results:
            ratios[f"{key} / reference (img/s)"] = rate(key) / rate("reference")
            if mode_of(key) == "step":
                ratios[f"{key} / reference (img per CPU-s)"] = rate(key, "images_per_cpu_s") / rate(
                    "reference", "images_per_cpu_s"
                )
    if "data" in results and steps:
        ratios[f"data / {steps[0]} (img/s)"] = rate("data") / rate(steps[0])
        ratios[f"data / {steps[0]} (best run)"] = rate("data", "images_per_s_max") / rate(steps[0], "images_per_s_max")
    for key in results:
        if key.endswith(" compile") and key[: -len(" compile")] in results:
            base = key[: -len(" compile")]
            ratios[f"{key} / {base} (img/s)"] = rate(key) / rate(base)
            ratios[f"{key} / {base} (img per CPU-s)"] = rate(key, "images_per_cpu_s") / rate(base, "images_per_cpu_s")
        if " bf16" in key and key.replace(" bf16", " fp32") in results:
            base = key.replace(" bf16", " fp32")
            ratios[f"{key} / {base} (img/s)"] = rate(key) / rate(base)
    return ratios


def add_flop_reports(summary: Dict) -> None:
    """Each model mode's FLOP report (:func:`flop_report`) against the run's measured peak of its
    precision and, on a GPU whose name is known, the datasheet's; written into ``summary``."""
    flops, peak = summary.get("flops"), summary.get("peak") or {}
    if not flops:
        return
    sheet = DATASHEET_TFLOPS.get(summary.get("datasheet") or "")
    for key, result in summary["results"].items():
        if mode_of(key) not in MODEL_MODES:
            continue
        precision = result.get("precision", "fp32")
        datasheet = None
        if sheet:
            datasheet = {precision: sheet[precision]} | ({"tf32": sheet["tf32"]} if precision == "fp32" else {})
        report = flop_report(flops["per_image"], result["images_per_s"], peak.get(precision), datasheet)
        paired = paired_fractions(flops["per_image"], result["runs"], precision)
        if paired:  # each run against the peak measured in its own process: the median of those
            for name, values in paired.items():
                report[name], report[name + "_runs"] = statistics.median(values), values
        report["gflop_per_s_min"] = gflop_per_s(flops["per_image"], result["images_per_s_min"])
        report["gflop_per_s_max"] = gflop_per_s(flops["per_image"], result["images_per_s_max"])
        counted = result.get("flops_per_image_counted")
        if counted is not None:  # this mode's own loop, counted: the same work as the config's count
            report["counted_relative_difference"] = counted / flops["per_image"] - 1
        result["flops"] = report


def paired_fractions(flops_per_image: float, runs: List[Dict], precision: str) -> Optional[Dict[str, List[float]]]:
    """Per run: its achieved GFLOP/s over the peak its own process measured right after it (the
    larger of matmul and convolution; and each of them); None unless every run measured one."""
    out = {"fraction_of_peak": [], "fraction_of_matmul_peak": [], "fraction_of_conv_peak": []}
    for run in runs:
        measured = (run.get("peak") or {}).get(precision)
        if not measured:
            return None
        rates = {bench: measured[bench]["gflop_per_s"] for bench in ("matmul", "conv") if bench in measured}
        achieved = gflop_per_s(flops_per_image, run["images_per_s"])
        out["fraction_of_peak"].append(achieved / max(rates.values()))
        for bench, rate in rates.items():
            out[f"fraction_of_{bench}_peak"].append(achieved / rate)
    return {k: v for k, v in out.items() if v}


def table(summary: Dict) -> str:
    rows = [
        (
            "mode",
            "img/s",
            "min-max",
            "median it.",
            "best it.",
            "img/CPU-s",
            "s/iter",
            "peak MiB",
            "load 1m",
            "GFLOP/img",
            "GFLOP/s",
            "% peak",
            "% conv",
        )
    ]
    for mode, s in summary["results"].items():
        mem = s.get("peak_cuda_allocated_mib", s["peak_rss_mib"])
        per_iter = statistics.median(r["seconds_per_iteration"]["median"] for r in s["runs"])
        loads = s["load_average_1min"]
        f = s.get("flops") or {}

        def pct(key):
            return f"{100 * f[key]:.1f}" if key in f else "-"

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
                f"{f['gflop_per_image']:.3f}" if f else "-",
                f"{f['gflop_per_s']:.1f}" if f else "-",
                pct("fraction_of_peak"),
                pct("fraction_of_conv_peak"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += peak_lines(summary)
    for name, value in summary["ratios"].items():
        lines.append(f"{name}: {value:.3f}")
    for key, s in summary["results"].items():
        prof = s.get("profile")
        if prof:
            split = prof["seconds_per_iteration"]
            total = sum(split.values())
            parts = ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in sorted(split.items(), key=lambda kv: -kv[1]))
            conv = prof.get("convolution_gflop_per_s")
            lines.append(
                f"{key}: op time by kind (torch.profiler, {prof['iterations']} iterations, {total:.2f} of "
                f"{prof['wall_seconds_per_iteration']:.2f} s per iteration): {parts}"
                + (f"; the convolutions run at {conv:.1f} GFLOP/s" if conv else "")
            )
        if s.get("warmup_excess_seconds") is not None and (
            key.endswith(" compile") or summary["settings"].get("compile")
        ):
            lines.append(
                f"{key}: first {len(s['runs'][0]['warmup_records'])} iterations took "
                f"{s['warmup_excess_seconds']:.1f} s beyond the steady state (compilation); process "
                f"{s['process_seconds']:.0f} s"
            )
    return "\n".join(lines)


def peak_lines(summary: Dict) -> List[str]:
    lines = []
    flops, peak = summary.get("flops"), summary.get("peak") or {}
    if flops:
        conv = (flops.get("convolutions") or [{}])[0]
        lines.append(
            f"FLOPs per image (one step, FlopCounterMode): {flops['per_image'] / 1e9:.3f} G = original-image pass "
            f"{flops['original_pass_per_image'] / 1e9:.3f} + forward {flops['forward_per_image'] / 1e9:.3f} + "
            f"backward {flops['backward_per_image'] / 1e9:.3f}"
            + (f"; largest convolution shape {conv_name(conv)}: {100 * conv['share_of_step']:.0f} %" if conv else "")
        )
    for precision, p in peak.items():
        parts = [
            f"{bench} {p[bench]:.1f} [{p[bench + '_min']:.1f}-{p[bench + '_max']:.1f}]"
            for bench in ("matmul", "conv")
            if bench in p
        ]
        lines.append(
            f"measured peak {precision} (GFLOP/s, median [min-max] of {p.get('measurements', 1)} measurements, "
            "one after each run): " + ", ".join(parts)
        )
    name = summary.get("datasheet")
    if name:
        sheet = DATASHEET_TFLOPS[name]
        lines.append(
            f"datasheet {name} (dense TFLOP/s): bf16 {sheet['bf16']}, fp32 {sheet['fp32']}, tf32 {sheet['tf32']}"
        )
        for key, s in summary["results"].items():
            f = s.get("flops") or {}
            parts = [f"{k[len('fraction_of_datasheet_') :]} {100 * v:.2f} %" for k, v in f.items() if "datasheet" in k]
            if parts:
                lines.append(f"{key}: of the datasheet peak " + ", ".join(parts))
    return lines


def conv_name(conv: Dict) -> str:
    kind = "convT" if conv.get("transposed") else "conv"
    k = "x".join(str(v) for v in conv["kernel_size"])
    hw = "x".join(str(v) for v in conv["input_hw"])
    return (
        f"{kind} {conv['in_channels']}->{conv['out_channels']} {k}/{conv['stride'][0]} at {hw}, batch {conv['batch']}"
    )


def model_name(resolved: Dict) -> str:
    """'RN18x0.25 32px b128' from a result's resolved settings."""
    _, _, depth, width, _, _ = resolved["trunk"].split()
    return f"RN{depth}{width if width != 'x1' else ''} {resolved['resolution']}px b{resolved['batch_size']}"


def mfu_table(summaries: List[Dict]) -> str:
    """One line per model mode of each result file: FLOPs per image, speed, fraction of the measured
    peak (MFU), of the datasheet's where known, and the step / reference ratio."""
    rows = [
        ("config", "device", "mode", "GFLOP/img", "img/s", "TFLOP/s", "MFU measured", "MFU datasheet", "/ reference")
    ]
    for summary in summaries:
        config = summary["settings"]["config"].split("/")[-1]
        device = summary["hardware"].get("gpu") or summary["hardware"]["cpu"]
        for key, s in summary["results"].items():
            f = s.get("flops")
            if not f:
                continue
            sheet = [f"{100 * v:.1f}% {k[len('fraction_of_datasheet_') :]}" for k, v in f.items() if "datasheet" in k]
            ratio = summary["ratios"].get(f"{key} / reference (img/s)")
            rows.append(
                (
                    f"{config}: {model_name(s['resolved'])}",
                    device,
                    key,
                    f"{f['gflop_per_image']:.2f}",
                    f"{s['images_per_s']:.1f}",
                    f"{f['gflop_per_s'] / 1e3:.3f}",
                    f"{100 * f['fraction_of_peak']:.1f} %" if "fraction_of_peak" in f else "-",
                    ", ".join(sheet) or "-",
                    f"{ratio:.2f}" if ratio else "-",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args._child:
        child_main(args)
        return 0
    if args.summarize:
        summaries = [json.loads(Path(p).read_text()) for p in args.summarize]
        print(mfu_table(summaries))
        return 0
    forwarded, skip = [], False
    for a in argv:  # the children get every option but --json
        if not skip and not a.startswith("--json"):
            forwarded.append(a)
        skip = a == "--json"
    started = datetime.datetime.now(datetime.timezone.utc)
    plan = run_plan(args)
    model_modes = any(mode in MODEL_MODES for _, mode, _, _ in plan)
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
        flops = None
        if model_modes:  # once per config, in a process of its own
            flops = run_child(forwarded, "flops", data_root, variant=("fp32", False))
            print(
                f"FLOPs per image: {flops['per_image'] / 1e9:.3f} G (counted in {flops['seconds']:.1f} s)", flush=True
            )
        conv = json.dumps((flops.get("convolutions") or [None])[0]) if flops else None
        extra = ["--_conv", conv] if conv else []
        # modes interleaved (step, data, plain, step, ...) so that load from other processes
        # on a shared machine falls on all of them alike
        runs = {key: [] for key, *_ in plan}
        for repeat in range(args.repeats):
            for key, mode, precision, compiled in plan:
                fresh = compiled and args.compile_cache == "fresh"
                runs[key].append(
                    run_child(forwarded, mode, data_root, (precision, compiled), extra, fresh_compile_cache=fresh)
                )
                r = runs[key][-1]
                peak = "".join(
                    f", peak {name} matmul {p['matmul']['gflop_per_s']:.0f}"
                    + (f" conv {p['conv']['gflop_per_s']:.0f}" if "conv" in p else "")
                    for name, p in (r.get("peak") or {}).items()
                    if name in PRECISIONS
                )
                print(
                    f"[{repeat + 1}/{args.repeats}] {key}: {r['images_per_s']:.2f} img/s, "
                    f"load {r['load_average_before'][0]:.2f}" + (f"{peak} GFLOP/s" if peak else ""),
                    flush=True,
                )
        results = {}
        for key, mode, precision, compiled in plan:
            results[key] = aggregate(runs[key]) | {"mode": mode, "precision": precision, "compiled": compiled}
    peaks = [r["peak"] for key in results for r in results[key]["runs"] if r.get("peak")]
    hardware = environment(args.device)
    summary = {
        "command": " ".join(["python benchmarks/throughput.py", *argv]),
        "date": started.isoformat(timespec="seconds"),
        **hardware,
        "settings": {
            k: getattr(args, k)
            for k in (
                "config",
                "depth",
                "decoder_depth",
                "resolution",
                "batch_size",
                "device",
                "precisions",
                "channels_last",
                "compile",
                "compare_compile",
                "compile_cache",
                "workers",
                "threads",
                "metrics_frequency",
                "warmup",
                "iterations",
                "data_batches",
                "repeats",
                "fake_data",
                "peak_seconds",
                "profile",
                "overrides",
            )
        },
        "flops": flops,
        "peak": aggregate_peak(peaks) if peaks else None,
        "datasheet": datasheet_name(hardware["hardware"].get("gpu", "")) if args.device == "cuda" else None,
        "results": results,
        "ratios": compute_ratios(results),
    }
    add_flop_reports(summary)
    print(table(summary))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
