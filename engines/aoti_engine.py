"""AOTInductor backend: the restorer compiled ahead of time into a native package.

``torch.export`` traces the restorer (H and W dynamic, as multiples of its input
multiple) and ``aoti_compile_and_package`` turns it into a ``.pt2`` package of
generated kernels: Triton on a GPU, C++ on the CPU. The package is cached on
disk (see :func:`smokeclear.runtime.aoti_package`), so only the first start on a
machine pays for the compile (minutes); later starts load it in about a second.
Frames go in and out exactly as with the torch backend, CUDA graphs included.

A detail stage's gain is compiled into the package as a constant (the package
exposes no handle to it: ``load_constants`` does not list it), so this engine
cannot change it live: :meth:`AotiEngine.set_detail_gain` says so and returns
False, and the runtime keys cached packages by the gain as well.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from smokeclear.engines.base import EngineError, padded_size
from smokeclear.engines.torch_engine import TorchEngine

log = logging.getLogger(__name__)

#: Makes (or finds in the cache) the package for a prepared module and an example input.
PackageMaker = Callable[[nn.Module, torch.Tensor], Path]


class AotiEngine(TorchEngine):
    def __init__(
        self,
        build_module: Callable[[], nn.Module],
        package_for: PackageMaker,
        device: str = "cpu",
        half: bool | None = None,
        cuda_graphs: bool | None = None,
    ) -> None:
        super().__init__(build_module, device=device, half=half, cuda_graphs=cuda_graphs)
        self.package_for = package_for
        self.name = self.name.replace("torch-", "aoti-", 1)
        self._told_gain_is_fixed = False

    def set_detail_gain(self, gain: float) -> bool:
        if self._detail_stages and not self._told_gain_is_fixed:
            self._told_gain_is_fixed = True
            compiled = float(self._detail_stages[0].detail_gain[0])
            log.warning(
                "%s cannot change the detail gain live (AOTInductor compiles it in): it "
                "stays x%g; use --backend torch to change it while running",
                self.name,
                compiled,
            )
        return False

    def prepare(
        self, module: nn.Module, height: int, width: int
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        multiple = self.input_multiple
        example = torch.rand(
            1,
            3,
            *padded_size(height, width, multiple),
            device=self.device,
            dtype=torch.float16 if self.half else torch.float32,
        )
        if self.device.type == "cuda":
            example = example.contiguous(memory_format=torch.channels_last)
        runner = self._load(module, example)
        # The generated code indexes memory with the traced strides and does not check
        # them: every input must have the example's layout (an unpadded upload is a
        # permuted view otherwise).
        layout = (
            torch.channels_last
            if example.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        return lambda tensor: runner(tensor.contiguous(memory_format=layout))

    def _load(self, module: nn.Module, example: torch.Tensor) -> Callable:
        path = self.package_for(module, example)
        try:
            return torch._inductor.aoti_load_package(str(path))
        except Exception as error:  # a truncated file, or built by another torch
            log.warning(
                "AOTInductor package %s cannot be loaded (%s): compiling it again", path, error
            )
        path.unlink(missing_ok=True)
        path = self.package_for(module, example)
        try:
            return torch._inductor.aoti_load_package(str(path))
        except Exception as error:
            raise EngineError(f"AOTInductor package {path} cannot be loaded: {error}") from error
