import json

from smokeclear.bench.model_stats import model_stats
from smokeclear.cli import main
from smokeclear.registry import REGISTRY


def test_counts_the_paper_network_from_its_config():
    paper = REGISTRY["dereflect"].default_config.with_name("dereflect-paper.yaml")
    stats = model_stats("dereflect", 400, 536, paper)
    assert round(stats["parameters"] / 1e6, 3) == 10.926, "the paper's 10.926 M"
    assert 1000 < stats["gflops"] < 3000, "about 650 GFLOP per iteration at 400x540, 3 iterations"


def test_flops_grow_with_the_frame_and_write_json(tmp_path, capsys):
    out = tmp_path / "stats.json"
    sizes = ["--size", "64x64", "--size", "128x128"]
    assert main(["bench", "model-stats", "--restorer", "desmoke", *sizes, "--json", str(out)]) == 0
    small, large = json.loads(out.read_text())
    assert large["gflops"] == small["gflops"] * 4
    assert small["parameters"] == large["parameters"] > 0
    assert "GFLOP per 64x64 frame" in capsys.readouterr().out


def test_a_bad_restorer_is_one_line_and_exit_2():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "smokeclear", "bench", "model-stats", "--restorer", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("smokeclear: error: ")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
