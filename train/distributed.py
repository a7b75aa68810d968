"""Training on one device or many: the device, torchrun's environment, the process group, DDP.

``smokeclear train`` started by ``torchrun`` runs one process (rank) per device, on
one machine or several. Each rank holds a replica of the network wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel` and draws its own batches; DDP
starts every replica from rank 0's weights, averages the gradients in ``backward``
and hands rank 0's batch-norm buffers to the others at every forward. What DDP does
not see is done here: the adversary's discriminator (its gradients averaged before
each of its steps), the validation score and the end-of-epoch buffers (rank 0's, so
early stopping and the learning-rate plateau decide alike everywhere), the resume
state (read by rank 0, sent to all), and who writes files (rank 0; the others wait at
a barrier). gloo on the CPU, NCCL on CUDA GPUs, each rank on ``cuda:LOCAL_RANK``.

Without torchrun's environment, :class:`Replicas` is one process on one device, and
every method here does nothing beyond moving tensors to that device.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from smokeclear.errors import UserError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "gloo", "nccl")
#: What torchrun sets for every worker; all of them, or none (one process).
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_PLACEMENT = TORCHRUN_VARIABLES[:3]

T = TypeVar("T")


@dataclass(frozen=True)
class Launch:
    """Where torchrun placed this process: ``rank`` of ``world_size``, ``local_rank`` on
    its machine."""

    rank: int
    local_rank: int
    world_size: int


def launch_from_env(environ: Mapping[str, str]) -> Launch | None:
    """torchrun's placement from its environment variables; None without any of them.

    Raises:
        UserError: some of :data:`TORCHRUN_VARIABLES` are set and others not, or the
            numbers do not fit together.
    """
    present = [name for name in TORCHRUN_VARIABLES if name in environ]
    if not any(name in environ for name in _PLACEMENT):
        return None
    missing = [name for name in TORCHRUN_VARIABLES if name not in environ]
    if missing:
        raise UserError(
            f"torchrun's environment is half set: {', '.join(present)} but not "
            f"{', '.join(missing)}",
            "Start training with torchrun (it sets them all), or unset "
            f"{', '.join(present)} to train in one process.",
        )
    try:
        rank, world_size, local_rank = (int(environ[name]) for name in _PLACEMENT)
    except ValueError:
        values = ", ".join(f"{name}={environ[name]!r}" for name in _PLACEMENT)
        raise UserError(
            f"torchrun's variables are not whole numbers ({values})",
            "Start training with torchrun, which sets them.",
        ) from None
    if not (world_size >= 1 and 0 <= rank < world_size and 0 <= local_rank <= rank):
        raise UserError(
            f"RANK {rank}, LOCAL_RANK {local_rank} and WORLD_SIZE {world_size} do not fit together",
            "Start training with torchrun, which sets them.",
        )
    return Launch(rank, local_rank, world_size)


def choose_device(choice: str, local_rank: int | None = None) -> torch.device:
    """``--device``: ``auto`` is CUDA where torch sees a GPU, else the CPU. Under torchrun
    a CUDA rank trains on ``cuda:LOCAL_RANK``."""
    if choice not in DEVICES:
        raise UserError(f"unknown device {choice!r}", f"Use one of {', '.join(DEVICES)}.")
    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise UserError(
            f"--device cuda, but torch {torch.__version__} sees no CUDA GPU",
            "Use --device cpu (or auto), or install a CUDA build of torch on a GPU machine.",
        )
    if choice == "cpu" or not has_cuda:
        return torch.device("cpu")
    if local_rank is None:
        return torch.device("cuda", torch.cuda.current_device())
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise UserError(
            f"the rank with LOCAL_RANK {local_rank} has no GPU of its own: this machine has "
            f"{count}",
            f"Start at most {count} processes per machine (torchrun --nproc_per_node {count}), "
            "or train on the CPU with --device cpu.",
        )
    return torch.device("cuda", local_rank)


def choose_backend(choice: str, device: torch.device) -> str:
    """``--backend``: ``auto`` is NCCL for CUDA ranks and gloo for CPU ones."""
    if choice not in BACKENDS:
        raise UserError(f"unknown backend {choice!r}", f"Use one of {', '.join(BACKENDS)}.")
    if choice == "auto":
        choice = "nccl" if device.type == "cuda" else "gloo"
    if choice == "nccl" and device.type != "cuda":
        raise UserError(
            "--backend nccl needs CUDA GPUs, but this rank trains on the CPU"
            + ("" if torch.cuda.is_available() else " (torch sees no CUDA GPU)"),
            "Use --backend gloo (or auto) to train on CPUs.",
        )
    available = {"nccl": dist.is_nccl_available, "gloo": dist.is_gloo_available}[choice]()
    if not available:
        raise UserError(
            f"this torch build ({torch.__version__}) has no {choice} backend",
            "Use --backend auto, or a torch build with it.",
        )
    return choice


def on_device(value: T, device: torch.device) -> T:
    """``value`` with every tensor in it moved to ``device``: a tensor, or tuples, named
    tuples and lists of them (a batch in any recipe's form); anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)  # type: ignore[return-value]
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(on_device(item, device) for item in value))  # type: ignore[return-value]
    if isinstance(value, tuple | list):
        return type(value)(on_device(item, device) for item in value)  # type: ignore[return-value]
    return value


class _MethodsAsForward(nn.Module):
    """``forward(name, ...)`` runs ``network.name(...)``.

    DDP averages gradients only for calls through its own ``forward``, and some
    objectives call other methods of the network (dereflect's ``iterate``).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.network, method)(*args, **kwargs)


class Replica:
    """The network as the loss sees it under torchrun.

    ``replica(x)`` and the network's own methods (``replica.iterate(x)``) run through
    DDP; :class:`nn.Module`'s methods, submodules and parameters are the network's.
    The DDP wrapper is made at the first call (on every rank alike: each calls the
    same loss), which tells how the network is trained: through ``forward`` every
    parameter takes part; through another method (dereflect's ``iterate``, whose side
    and reflection heads some losses leave out) DDP must look for unused parameters,
    an extra walk of the graph it warns about where none are unused.
    """

    def __init__(self, network: nn.Module, device: torch.device) -> None:
        self.network = network
        self.device = device
        self.parallel: DistributedDataParallel | None = None

    def run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``network.method(*args, **kwargs)`` through DDP."""
        if self.parallel is None:
            # DDP syncs rank 0's buffers at construction and at every forward by default.
            self.parallel = DistributedDataParallel(
                _MethodsAsForward(self.network),
                device_ids=[self.device] if self.device.type == "cuda" else None,
                find_unused_parameters=method != "forward",
            )
        return self.parallel(method, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run("forward", *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.network, name)
        if inspect.ismethod(attribute) and not hasattr(nn.Module, name):
            return functools.partial(self.run, name)
        return attribute


@dataclass(frozen=True)
class Replicas:
    """This process's part in training: rank ``rank`` of ``world_size``, on ``device``.

    The default is one process on the CPU. ``distributed`` is True under torchrun,
    with the process group that :func:`session` opened.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    distributed: bool = False
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: it logs, scores validation and writes the files."""
        return self.rank == 0

    def sampler_seed(self, seed: int, epoch: int) -> list[int]:
        """The seed of a rank's sampler in ``epoch``: every rank its own shard of patches.

        One process keeps ``[seed, epoch]``, so its runs draw what they always drew.
        """
        return [seed, epoch, self.rank] if self.distributed else [seed, epoch]

    def replicate(self, network: nn.Module) -> nn.Module | Replica:
        """What the loss calls: the network itself, or its DDP :class:`Replica` (which
        takes rank 0's weights and buffers at its first call)."""
        return Replica(network, self.device) if self.distributed else network

    def prepare_objective(self, objective: Any) -> None:
        """Moves an objective's extra networks (``vgg``; ``adversary.discriminator``) to the
        device; under torchrun the discriminator starts from rank 0's weights and its
        gradients are averaged over the ranks before each of its optimizer's steps."""
        vgg = getattr(objective, "vgg", None)
        if vgg is not None:
            vgg.to(self.device)
        adversary = getattr(objective, "adversary", None)
        if adversary is None:
            return
        adversary.discriminator.to(self.device)
        if self.distributed:
            self.share_state(adversary.discriminator)
            parameters = list(adversary.discriminator.parameters())
            adversary.optimizer.register_step_pre_hook(
                lambda optimizer, args, kwargs: self._average_gradients(parameters)
            )

    def _average_gradients(self, parameters: list[nn.Parameter]) -> None:
        for parameter in parameters:
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad)
                parameter.grad.div_(self.world_size)

    def share_state(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers of ``module``, on every rank."""
        if self.distributed:
            with torch.no_grad():
                for tensor in [*module.parameters(), *module.buffers()]:
                    dist.broadcast(tensor, src=0)

    def share_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (batch-norm statistics) of ``module``, on every rank: DDP
        hands them over at each forward, and each rank's last forward updated its own."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def share_score(self, score: Callable[[], float]) -> float:
        """``score()`` on rank 0, the same number on every rank (validation: early
        stopping and the plateau then decide alike everywhere)."""
        if not self.distributed:
            return score()
        value = torch.tensor(
            [score() if self.is_main else 0.0], dtype=torch.float64, device=self.device
        )
        dist.broadcast(value, src=0)
        return float(value.item())

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (each rank's training loss)."""
        if not self.distributed:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return float(total.item()) / self.world_size

    def from_main(self, read: Callable[[], T]) -> T:
        """``read()`` on rank 0, its result sent to every rank (the resume state: other
        machines need not see rank 0's files). A :class:`UserError` it raises is raised
        on every rank."""
        if not self.distributed:
            return read()
        payload: list[Any] = [None]
        if self.is_main:
            try:
                payload[0] = ("value", read())
            except UserError as error:
                payload[0] = ("error", (error.problem, error.fix))
        dist.broadcast_object_list(
            payload, src=0, device=self.device if self.device.type == "cuda" else None
        )
        kind, content = payload[0]
        if kind == "error":
            raise UserError(*content)
        return content

    def barrier(self) -> None:
        """Every rank waits here until all have come (after rank 0 wrote files)."""
        if self.distributed:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def describe_batch(self, batch_size: int) -> str:
        """``"batch 8"``, or ``"batch 8 per rank x 4 ranks = 32"``: the effective batch."""
        if not self.distributed:
            return f"batch {batch_size}"
        return (
            f"batch {batch_size} per rank x {self.world_size} ranks = "
            f"{batch_size * self.world_size} ({self.backend} on {self.device.type})"
        )


@contextmanager
def session(device: str = "auto", backend: str = "auto") -> Iterator[Replicas]:
    """The training's :class:`Replicas`: under torchrun (its environment set) with the
    process group open until the block ends, on error too; else one process.

    Ranks other than 0 log warnings and errors only.
    """
    launch = launch_from_env(os.environ)
    if launch is None:
        if backend != "auto":
            raise UserError(
                f"--backend {backend} is for training under torchrun, and this is one process",
                "Leave --backend out, or start training with torchrun.",
            )
        yield Replicas(device=choose_device(device))
        return
    chosen_device = choose_device(device, launch.local_rank)
    chosen_backend = choose_backend(backend, chosen_device)
    if dist.is_initialized():
        raise RuntimeError("the process group is open already: one training per process")
    if chosen_device.type == "cuda":
        torch.cuda.set_device(chosen_device)
    try:
        dist.init_process_group(
            chosen_backend, init_method="env://", rank=launch.rank, world_size=launch.world_size
        )
    except (RuntimeError, ValueError) as error:
        address = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        raise UserError(
            f"rank {launch.rank} could not join the training group at {address} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})",
            "Check torchrun's --rdzv-endpoint / --master-addr and --master-port and that "
            "every machine can reach it.",
        ) from None
    logger = logging.getLogger("smokeclear")
    level = logger.level
    if launch.rank != 0:
        logger.setLevel(max(level, logging.WARNING))
    try:
        yield Replicas(
            launch.rank, launch.world_size, chosen_device, distributed=True, backend=chosen_backend
        )
    finally:
        logger.setLevel(level)
        dist.destroy_process_group()
