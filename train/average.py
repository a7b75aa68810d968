"""``python -m smokeclear.train.average OUT IN [IN ...]``: the mean of a run's epochs.

A fine-tune's epochs scatter around the optimum: on desmoke's validation split one
epoch to the next moved unseen heavy smoke by up to 0.8 dB. The mean of the last few
epochs' weights (``smokeclear train --keep-epochs``; Izmailov et al. 2018, "Averaging
weights leads to wider optima") sits nearer its centre. Batch-norm running statistics
are averaged like the weights; integer buffers (batch counts) come from the last file.

OUT is written in FP16 like the weights a run ships, with the last file's metadata,
the files and epochs averaged, and the average's own score on the run's validation batch (drawn
again from its train config and clean folders).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from smokeclear.config import from_mapping
from smokeclear.errors import UserError, exit_status
from smokeclear.nets.loading import load_restorer, save_weights, weights_metadata
from smokeclear.registry import get_restorer
from smokeclear.train import driver
from smokeclear.train.loop import as_validation


def average_weights(restorer: str, paths: list[Path]) -> tuple[nn.Module, dict]:
    """The network whose floating-point tensors are the mean of ``paths``' and the
    metadata to ship it with: the last file's, plus ``averaged`` (each file's name and
    epoch) and the mean's validation score."""
    if not paths:
        raise UserError("no weights files to average", "Pass one or more .safetensors files.")
    spec = get_restorer(restorer)
    networks = [load_restorer(spec, path) for path in paths]
    first = networks[0]
    for path, network in zip(paths[1:], networks[1:], strict=True):
        if network.config != first.config:
            raise UserError(
                f"{path} has another network config than {paths[0]}",
                "Average the epochs of one run.",
            )
    states = [network.state_dict() for network in networks]
    mean = {
        key: torch.stack([state[key] for state in states]).mean(dim=0)
        if tensor.is_floating_point()
        else tensor
        for key, tensor in states[-1].items()
    }
    first.load_state_dict(mean)
    metadatas = [weights_metadata(path) for path in paths]
    metadata = dict(metadatas[-1])
    for key in ("restorer", "network_config", "format", "epoch"):
        metadata.pop(key, None)
    metadata["averaged"] = [_provenance(p, m) for p, m in zip(paths, metadatas, strict=True)]
    metadata.update(validation_score(restorer, first, metadata))
    return first, metadata


def _provenance(path: Path, metadata: dict) -> dict:
    """What an averaged file was: its name, epoch and (itself a mean) what it averaged."""
    entry = {"file": path.name, "epoch": metadata.get("epoch")}
    if "averaged" in metadata:
        entry["averaged"] = metadata["averaged"]
    return entry


def validation_score(restorer: str, network: nn.Module, metadata: dict) -> dict[str, float]:
    """``{"val_...": score}`` of ``network`` on the validation batch of the run that
    ``metadata`` (a checkpoint's) describes; ``{}`` for metadata without a train config."""
    spec = get_restorer(restorer)
    recipe = driver.recipe_of(spec)
    if not isinstance(metadata.get("train_config"), dict):
        return {}
    config = from_mapping(recipe.train_config, metadata["train_config"], "train_config")
    folders = [Path(f) for f in metadata.get("data_recipe", {}).get("clean_dirs", [])]
    missing = [str(folder) for folder in folders if not folder.is_dir()]
    if missing:
        raise UserError(
            f"the run's clean folders {', '.join(missing)} are not here to validate on",
            "Average where the run was trained (the folders are read from its metadata).",
        )
    batch = driver.validation_batch(spec, config, folders)
    validation = as_validation(recipe.validation(batch, config), "cpu")
    with torch.no_grad():
        return {validation.key: validation.score(network)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m smokeclear.train.average",
        description="Write the mean of weights files of one run (e.g. its last epochs).",
    )
    parser.add_argument("restorer")
    parser.add_argument("out", type=Path, help="the .safetensors file to write (FP16)")
    parser.add_argument("weights", type=Path, nargs="+", help="the files to average")
    args = parser.parse_args(argv)

    def run() -> int:
        network, metadata = average_weights(args.restorer, args.weights)
        save_weights(network, args.out, get_restorer(args.restorer), metadata, torch.float16)
        print(f"wrote {args.out}: the mean of {len(args.weights)} files")
        return 0

    return exit_status("python -m smokeclear.train.average", run)


if __name__ == "__main__":
    raise SystemExit(main())
