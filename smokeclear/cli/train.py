"""``smokeclear train`` and ``smokeclear eval``: a restorer's recipe, from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from smokeclear.errors import UserError
from smokeclear.parsing import output_file
from smokeclear.registry import pair_layouts_help, vgg_weights_help


def add_parsers(commands, verbose: argparse.ArgumentParser) -> None:
    train = commands.add_parser(
        "train", parents=[verbose], help="train a restorer on synthetic data"
    )
    train.add_argument("restorer")
    train.add_argument("--out", type=Path, required=True, help="run folder for checkpoints")
    _folders(
        train, "--clean-dir", "folder of clean frames to degrade (repeatable; split by file name)"
    )
    _folders(
        train,
        "--pairs-dir",
        f"folder of real pairs with matching names: {pair_layouts_help()}; repeatable",
    )
    train.add_argument(
        "--vgg-weights",
        type=Path,
        help="torchvision VGG state dict for the perceptual loss (off without it): "
        f"{vgg_weights_help()}",
    )
    train.add_argument("--config", type=Path, help="YAML with network: and train: sections")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument(
        "--init",
        type=Path,
        metavar="WEIGHTS",
        help="start from these weights, e.g. the shipped ones to fine-tune",
    )
    train.add_argument("--max-epochs", type=int)
    train.add_argument(
        "--keep-epochs",
        action="store_true",
        help="also keep each epoch's weights in --out (epochNNN.safetensors), e.g. to average "
        "the last few with `python -m smokeclear.train.average`",
    )
    train.add_argument("--steps-per-epoch", type=int)
    train.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto (default): a CUDA GPU where torch sees one, else the CPU; under "
        "torchrun each rank takes cuda:LOCAL_RANK",
    )
    train.add_argument(
        "--backend",
        choices=("auto", "gloo", "nccl"),
        default="auto",
        help="under torchrun: auto (default) is nccl on GPUs, gloo on CPUs",
    )

    evaluate = commands.add_parser(
        "eval", parents=[verbose], help="evaluate a restorer on the held-out test set"
    )
    evaluate.add_argument("restorer")
    evaluate.add_argument("--weights", type=Path, help="default: the shipped weights")
    _folders(
        evaluate,
        "--clean-dir",
        "also test on the held-out images of this folder; its do-no-harm row takes all of "
        "it, or its held-out split when the weights trained on it",
    )
    _folders(evaluate, "--pairs-dir", f"also score real pairs: {pair_layouts_help()}; repeatable")
    evaluate.add_argument(
        "--frames-per-scene",
        type=int,
        default=10,
        help="frames taken from each held-out synthetic scene (default 10; fewer is quicker)",
    )
    evaluate.add_argument(
        "--work-scale",
        type=float,
        choices=(1.0, 0.5, 0.25),
        default=1.0,
        help="run the network at this scale of each frame and guided-upsample back, as the "
        "live view does (default 1)",
    )
    evaluate.add_argument(
        "--split",
        choices=("test", "val"),
        default="test",
        help="held-out frames to score: test (default; what you report) or val (what you "
        "tune settings on, so the test split stays unseen)",
    )
    evaluate.add_argument(
        "--set",
        type=network_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="replace a value of the weights' network config, e.g. a gate's thresholds "
        "(--set pass_through_density=[0.1,0.2]); YAML values; repeatable",
    )
    evaluate.add_argument("--json", type=output_file, help="also write the table as JSON here")
    evaluate.add_argument(
        "--examples",
        type=output_file,
        help="also write a PNG: one case per row, methods side by side",
    )


def network_setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` (the value in YAML) -> ``(KEY, value)``, for ``eval --set``."""
    import yaml

    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"the value of {text!r} is not YAML") from None
    return key.strip(), parsed


def _folders(parser: argparse.ArgumentParser, flag: str, help_text: str) -> None:
    """A repeatable folder option (``--clean-dir``, ``--pairs-dir``): a list of paths."""
    parser.add_argument(flag, type=Path, action="append", default=[], help=help_text)


def command_train(args: argparse.Namespace) -> int:
    from smokeclear.registry import get_restorer
    from smokeclear.train import distributed, driver
    from smokeclear.train.options import TrainOptions

    spec = get_restorer(args.restorer)
    options = TrainOptions(
        out_dir=args.out,
        clean_dirs=tuple(args.clean_dir),
        config_path=args.config,
        resume=args.resume,
        init_weights=args.init,
        max_epochs=args.max_epochs,
        steps_per_epoch=args.steps_per_epoch,
        progress=sys.stderr.isatty(),
        pairs_dirs=tuple(args.pairs_dir),
        vgg_weights=args.vgg_weights,
        keep_epochs=args.keep_epochs,
    )
    with distributed.session(args.device, args.backend) as replicas:
        result = driver.train(spec, options, replicas)
    if replicas.is_main:
        print(
            f"{spec.name}: {result.describe()} after {result.epochs} "
            f"epochs{' (early stop)' if result.stopped_early else ''}; weights in {args.out}"
        )
    return 0


def command_eval(args: argparse.Namespace) -> int:
    import importlib.util

    from smokeclear.registry import get_restorer
    from smokeclear.train import driver
    from smokeclear.train.options import EvalOptions

    if importlib.util.find_spec("skimage") is None:  # SSIM, before minutes of work
        raise UserError(
            "smokeclear eval needs scikit-image (the train extra), which is not installed",
            'Install it: pip install "smokeclear[train]" (in a clone: pip install -e ".[train]").',
        )
    spec = get_restorer(args.restorer)
    options = EvalOptions(
        weights=args.weights,
        clean_dirs=tuple(args.clean_dir),
        frames_per_scene=args.frames_per_scene,
        json_path=args.json,
        examples_path=args.examples,
        pairs_dirs=tuple(args.pairs_dir),
        work_scale=args.work_scale,
        split=args.split,
        network_overrides=dict(args.set),
    )
    rows = driver.evaluate(spec, options)
    print(driver.format_table(spec, rows, args.work_scale, args.split))
    return 0
