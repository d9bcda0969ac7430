"""The command lines of ``tools/aasae_view_similarity.py`` and ``tools/aasae_density.py``.

Both take a checkpoint (file or folder), read the run's config from the folder's
``train_config.yaml`` (or ``--config NAME``), and accept trailing ``config.KEY=value`` overrides.
A bad argument ends with one ``error: ...`` line and exit status 2.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import List

import torch

SPLITS = ("train", "test")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint file or checkpoint folder")
    parser.add_argument("--config", default=None,
                        help="training config name (e.g. pretrain/aasae/quickstart); default: the "
                             "checkpoint folder's train_config.yaml")
    parser.add_argument("--data", default="embedded",
                        help="'embedded' (the shipped Fashion-MNIST subset), an image folder, or a path "
                             "read with --data-format")
    parser.add_argument("--data-format", default=None,
                        help="aasae_array format of --data: cifar10|stl10|stl10_unlabeled|fashion_mnist|npz")
    parser.add_argument("--split", default="test", choices=SPLITS, help="split of array data (default test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("overrides", nargs="*", help="config.KEY=value overrides of the run's config")


def _model_and_images(args):
    import vissl_aasae  # noqa: F401
    from vissl_aasae.visualize.checkpoint import find_checkpoint, load_model, load_run_config
    from vissl_aasae.visualize.data import open_images

    checkpoint = find_checkpoint(args.checkpoint)
    config = load_run_config(checkpoint, args.config, args.overrides)
    images = open_images(args.data, args.data_format, args.split)
    model = load_model(config, checkpoint, args.device)
    print(f"checkpoint {checkpoint}, data {images.name}: {len(images)} images", flush=True)
    return checkpoint, config, images, model


def _warn_skipped(skipped) -> None:
    if skipped:
        shown = "; ".join(skipped[:5]) + (f"; ... and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        print(f"warning: {len(skipped)} unreadable images skipped: {shown}", file=sys.stderr, flush=True)


def _run(body, argv) -> int:
    try:
        return body(argv)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def view_similarity_main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(
        description="The paper's Fig. 5: cosine similarities of the representations of V augmented "
                    "views of E examples, as a PNG, with the same- and different-example means.")
    _common(parser)
    parser.add_argument("--examples", type=int, default=10, help="E, examples drawn (seeded)")
    parser.add_argument("--views", type=int, default=5, help="V, augmented views of each")
    parser.add_argument("--representation", default="h", choices=("h", "mu"),
                        help="h: the trunk's pooled feature (the paper's); mu: the posterior mean")
    parser.add_argument("--output", default=None, help="PNG path (default <checkpoint folder>/view_similarity.png)")

    def body(argv):
        args = parser.parse_args(argv)
        from vissl_aasae.visualize.data import view_transform
        from vissl_aasae.visualize.view_similarity import plot, view_similarity

        checkpoint, config, images, model = _model_and_images(args)
        result = view_similarity(model, images, view_transform(config, "augmented"), args.examples, args.views,
                                 args.seed, args.representation, device=args.device)
        _warn_skipped(result.skipped)
        output = Path(args.output) if args.output else checkpoint.parent / "view_similarity.png"
        plot(result, output, title=f"{checkpoint.parent.name}/{checkpoint.name}, representation {args.representation}")
        print(f"same-example mean cosine similarity: {result.same_mean:.4f}")
        print(f"different-example mean cosine similarity: {result.different_mean:.4f}")
        print(f"figure ({args.examples} examples x {args.views} views): {output}", flush=True)
        return 0

    return _run(body, argv)


def density_main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Importance-sampled log p(x) and bits/dim of a checkpoint on a data split.")
    _common(parser)
    parser.add_argument("--num-samples", "-k", type=int, default=100, help="k importance samples per image")
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default ~512/k)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for the transforms")
    parser.add_argument("--output", default=None, help="also write the result as JSON to this path")

    def body(argv):
        args = parser.parse_args(argv)
        from vissl_aasae.visualize.data import view_transform
        from vissl_aasae.visualize.density import evaluate_density

        if args.num_samples < 1:
            raise ValueError(f"--num-samples {args.num_samples} must be a positive integer")

        _, config, images, model = _model_and_images(args)
        result = evaluate_density(model, images, view_transform(config, "original"), args.num_samples,
                                  args.batch_size, args.limit, args.seed, args.device, args.workers)
        _warn_skipped(result.skipped)
        print(result.line(), flush=True)
        if args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_text(json.dumps(vars(result) | {"data": images.name}) + "\n")
        return 0

    return _run(body, argv)
