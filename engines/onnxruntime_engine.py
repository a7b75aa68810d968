"""onnxruntime backend: the CPU backend everywhere; CUDA / TensorRT providers when installed.

The ONNX file carries ``input_multiple`` in its metadata (written by
:mod:`smokeclear.export.onnx_export`), so this backend needs neither torch nor the
network code. A model with a detail stage takes its gain as a second input,
``detail_gain``, fed with every frame.

Two kinds of model run here. A frame model (exported with ``frame_io``; its input
is uint8) does the pixel work in the graph: frames go in and come out as
``(H, W, 3)`` uint8 BGR and this engine converts nothing. A restorer model takes
``(1, 3, H', W')`` RGB float32 in [0, 1]: the engine converts on the host with
:func:`~smokeclear.engines.base.bgr8_to_nchw` / ``nchw_to_bgr8`` (for the CPU
provider the host is the device).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from smokeclear.engines.base import (
    DETAIL_GAIN_INPUT,
    EngineError,
    bgr8_to_nchw,
    check_frame,
    nchw_to_bgr8,
)
from smokeclear.errors import UserError

log = logging.getLogger(__name__)

#: Preference order among the providers this onnxruntime build offers.
PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def prefers_frame_models() -> bool:
    """Whether this onnxruntime has a GPU provider, where a frame model pays off.

    On a GPU the graph's pixel work runs on the device and the copies carry uint8.
    On the CPU provider a frame model costs more CPU per frame than the numpy host
    conversion around a restorer model (``smokeclear bench transfer-cost``).
    """
    import onnxruntime as ort

    return bool(set(PROVIDER_PREFERENCE[:2]) & set(ort.get_available_providers()))


class OnnxRuntimeEngine:
    """Engine protocol over an ONNX Runtime session.

    Args:
        detail_gain: the starting gain of a model with a ``detail_gain`` input
            (required for one; ignored otherwise).
    """

    def __init__(
        self,
        model_path: Path,
        providers: tuple[str, ...] | None = None,
        threads: int | None = None,
        detail_gain: float | None = None,
    ) -> None:
        self.model_path = model_path
        self.requested_providers = providers
        self.threads = threads
        self.detail_gain = detail_gain
        self.name = "onnxruntime"
        self._session = None
        self._input_name = ""
        # (1,) float32, replaced (never written in place) by set_detail_gain; None: no input.
        self._gain_feed: np.ndarray | None = None
        self._frame_io = False  # the model takes and returns uint8 BGR frames
        self.input_multiple = 1

    def start(self, height: int, width: int) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        providers = [p for p in (self.requested_providers or PROVIDER_PREFERENCE) if p in available]
        if not providers:
            raise UserError(
                f"none of the onnxruntime providers {self.requested_providers} is available "
                f"(this build has {', '.join(available)})",
                "For CUDA, replace the CPU build: pip uninstall -y onnxruntime && pip install "
                "onnxruntime-gpu; or use --backend torch.",
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            options.intra_op_num_threads = self.threads
        if not self.model_path.is_file():
            raise UserError(
                f"ONNX model {self.model_path} does not exist",
                "Export it with `smokeclear export`, or check the path.",
            )
        try:
            self._session = ort.InferenceSession(str(self.model_path), options, providers=providers)
        except Exception as error:
            raise UserError(
                f"ONNX model {self.model_path} cannot be loaded "
                f"({type(error).__name__}: {str(error).splitlines()[0][:200]})",
                "The file is corrupt or from an incompatible exporter: delete it and "
                "re-export with `smokeclear export` (cached models are re-made on the next run).",
            ) from None
        metadata = self._session.get_modelmeta().custom_metadata_map
        self.input_multiple = int(metadata.get("input_multiple", "1"))
        inputs = self._session.get_inputs()
        names = [value.name for value in inputs]
        self._input_name = next(name for name in names if name != DETAIL_GAIN_INPUT)
        self._frame_io = next(v.type for v in inputs if v.name == self._input_name) == (
            "tensor(uint8)"
        )
        self._gain_feed = None
        if DETAIL_GAIN_INPUT in names:
            if self.detail_gain is None:
                raise UserError(
                    f"ONNX model {self.model_path} magnifies detail and needs a detail gain",
                    "Pass detail_gain (on the command line: --detail-gain K).",
                )
            self._gain_feed = np.array([self.detail_gain], np.float32)
        used = self._session.get_providers()[0]
        self.name = "onnxruntime-" + {
            "CPUExecutionProvider": "cpu",
            "CUDAExecutionProvider": "cuda",
            "TensorrtExecutionProvider": "tensorrt",
        }.get(used, used)
        log.debug("onnxruntime session on %s, input multiple %d", used, self.input_multiple)
        self.download(
            self.infer(self.upload(np.zeros((height, width, 3), np.uint8))), height, width
        )

    def upload(self, frame: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 BGR -> the model's input: the frame itself, or NCHW float32."""
        if self._frame_io:
            check_frame(frame)
            return frame
        return bgr8_to_nchw(frame, self.input_multiple)

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise EngineError("engine used before start()")
        feeds = {self._input_name: tensor}
        gain = self._gain_feed
        if gain is not None:
            feeds[DETAIL_GAIN_INPUT] = gain
        try:
            return self._session.run(None, feeds)[0]
        except Exception as error:
            raise EngineError(f"onnxruntime inference failed: {error}") from error

    def download(self, tensor: np.ndarray, height: int, width: int) -> np.ndarray:
        """The model's output -> ``(height, width, 3)`` uint8 BGR."""
        if self._frame_io:
            return tensor[:height, :width]
        return nchw_to_bgr8(tensor, height, width)

    def set_detail_gain(self, gain: float) -> bool:
        if self._gain_feed is None:
            return False
        self.detail_gain = float(gain)
        self._gain_feed = np.array([gain], np.float32)
        return True

    def close(self) -> None:
        self._session = None
        self._gain_feed = None
