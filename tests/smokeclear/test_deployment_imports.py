import subprocess
import sys


def test_live_path_imports_without_torch():
    """A TensorRT deployment box has no torch: registry, onnxruntime engine and graph
    must import without it."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import smokeclear.registry, smokeclear.engines.onnxruntime_engine\n"
        "import smokeclear.stream.graph, smokeclear.stream.sources.opencv\nprint('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr
