"""What the bench runs: one backend at one precision on one device (a :class:`Variant`),
which of them can run here and why the others cannot, and the engine of each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from smokeclear.bench.config import BENCH_BACKENDS, PRECISIONS, QUICK_BACKENDS, BenchConfig
from smokeclear.engines.base import Engine
from smokeclear.engines.select import unavailable_reason
from smokeclear.registry import parse_chain
from smokeclear.runtime import EngineRequest


@dataclass(frozen=True)
class Variant:
    """One backend at one precision on one device.

    ``cuda_graphs``: the torch and AOTInductor engines replay CUDA graphs (as deployed
    on a GPU); the other backends ignore it.
    """

    backend: str  # tensorrt, aoti, torch or onnxruntime
    precision: str  # fp32 or fp16
    device: str  # cpu or cuda
    cuda_graphs: bool = False

    @property
    def baseline(self) -> bool:
        """torch FP32 eager: what every speed-up is measured against."""
        return self.backend == "torch" and self.precision == "fp32" and not self.cuda_graphs

    @property
    def label(self) -> str:
        return f"{self.backend}-{self.precision}"


def deployed(backend: str, precision: str, device: str) -> Variant:
    """``backend`` as deployed: CUDA graphs on a GPU, except the torch FP32 eager baseline."""
    eager = Variant(backend, precision, device)
    graphs = device == "cuda" and backend in ("torch", "aoti") and not eager.baseline
    return Variant(backend, precision, device, cuda_graphs=graphs)


@dataclass(frozen=True)
class Skipped:
    """A variant that does not run, and why (the JSON's ``skipped`` entries)."""

    backend: str
    precision: str
    device: str
    reason: str


def variant_reason(backend: str, precision: str, device: str) -> str | None:
    """None when ``backend`` can run at ``precision`` on ``device`` here, else why not."""
    why = unavailable_reason(backend, device)
    if why is not None:
        return why
    if backend == "tensorrt" and precision == "fp32":
        return "smokeclear builds FP16 TensorRT engines only (strongly typed FP16 ONNX)"
    if backend in ("torch", "aoti") and precision == "fp16" and device != "cuda":
        return f"{backend} runs FP16 on a CUDA GPU only; this run is on the CPU"
    if backend == "onnxruntime" and precision == "fp16":
        import onnxruntime

        if device != "cuda" or "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return (
                "onnxruntime's CPU provider upcasts FP16 models to FP32 (nothing to measure); "
                "FP16 needs onnxruntime-gpu on a CUDA GPU"
            )
    return None


def plan_variants(config: BenchConfig) -> tuple[list[Variant], list[Skipped]]:
    """The variants to run, torch FP32 eager (the baseline) first, and the skipped ones.

    The baseline runs whenever torch can, asked for or not: every speed-up needs it.
    """
    runnable: list[Variant] = []
    skipped: list[Skipped] = []
    baseline = Variant("torch", "fp32", config.device)
    if variant_reason("torch", "fp32", config.device) is None:
        runnable.append(baseline)
    for backend in BENCH_BACKENDS:
        for precision in PRECISIONS:
            variant = deployed(backend, precision, config.device)
            if variant == baseline and runnable:
                continue
            why = variant_reason(backend, precision, config.device)
            if why is None and backend not in config.backends:
                why = (
                    f"left out by --quick (it runs {', '.join(QUICK_BACKENDS)}: no compile step)"
                    if config.quick and config.backends == QUICK_BACKENDS
                    else "not in --backends"
                )
            elif why is None and precision not in config.precisions:
                why = "not in --precisions"
            if why is None:
                runnable.append(variant)
            else:
                skipped.append(Skipped(backend, precision, config.device, why))
    return runnable, skipped


class EngineMaker:
    """Makes fresh, unstarted engines of any variant for a run.

    A chain's ONNX file is found (or exported) once per run and precision, not once
    per engine: finding it builds the torch chain, hashes the weights and the code
    and checks the file, seconds on a small CPU, and the graph view starts one
    engine per stream.

    Args:
        threads: onnxruntime's CPU threads; None: its default.
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._onnx: dict[tuple[str, str], Path] = {}

    def make(self, request: EngineRequest, variant: Variant) -> Engine:
        if variant.backend in ("torch", "aoti"):
            return self._torch(request, variant)
        if variant.backend == "onnxruntime":
            from smokeclear.engines.onnxruntime_engine import OnnxRuntimeEngine

            providers = ("CPUExecutionProvider",) if variant.device == "cpu" else None
            return OnnxRuntimeEngine(
                self.onnx_path(request, variant.precision),
                providers=providers,
                threads=self.threads,
            )
        from smokeclear.runtime import tensorrt_engine

        return tensorrt_engine(request)

    def onnx_path(self, request: EngineRequest, precision: str) -> Path:
        """The cached ONNX file of ``request`` at ``precision``, exported on first use."""
        from smokeclear.runtime import onnx_fp16_model, onnx_model

        key = (request.artefact_stem, precision)
        if key not in self._onnx:
            self._onnx[key] = (onnx_fp16_model if precision == "fp16" else onnx_model)(request)
        return self._onnx[key]

    @staticmethod
    def _torch(request: EngineRequest, variant: Variant) -> Engine:
        from smokeclear.engines.aoti_engine import AotiEngine
        from smokeclear.engines.torch_engine import TorchEngine
        from smokeclear.runtime import aoti_package, build_chain

        module = build_chain(request)
        options = {
            "device": variant.device,
            "half": variant.precision == "fp16",
            "cuda_graphs": variant.cuda_graphs,
        }
        if variant.backend == "aoti":
            return AotiEngine(
                lambda: module, lambda m, example: aoti_package(request, m, example), **options
            )
        return TorchEngine(lambda: module, **options)


def engine_request(config: BenchConfig, chain: str) -> EngineRequest:
    """The request of one chain (``"desmoke,lowlight"``) under ``config``."""
    specs = tuple(parse_chain(chain))
    names = {spec.name for spec in specs}
    return EngineRequest(
        specs,
        device=config.device,
        work_scale=config.work_scale,
        weights={name: path for name, path in config.weights.items() if name in names},
    )
