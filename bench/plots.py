"""The bench's plots: fps vs resolution and the end-to-end latency CDF, as PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: What a user without matplotlib is told (the bench checks before it measures).
NO_MATPLOTLIB = 'matplotlib is not installed (pip install "smokeclear[bench]"), no plots'


def matplotlib_missing() -> bool:
    """True when the plots cannot be drawn here."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return True
    return False


def write_plots(results: dict[str, Any], json_path: Path) -> tuple[list[Path], str | None]:
    """fps vs resolution and the end-to-end latency CDF as PNGs beside ``json_path``.

    Returns the files written, and a note when there are none (no matplotlib).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return [], NO_MATPLOTLIB
    written = []
    lines: dict[str, list[tuple[float, float]]] = {}
    for r in results["engine"]:
        label = f"{r['restorers']} {r['engine']}"
        lines.setdefault(label, []).append((r["width"] * r["height"] / 1e6, r["fps"]))
    if lines:
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for label, points in sorted(lines.items()):
            points.sort()
            axes.plot(*zip(*points, strict=True), marker="o", label=label)
        axes.set_xscale("log")
        axes.set_yscale("log")
        sizes = sorted(
            {
                (r["width"] * r["height"] / 1e6, f"{r['width']}x{r['height']}")
                for r in results["engine"]
            }
        )
        axes.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axes.set_xticks([pixels for pixels, _ in sizes], [text for _, text in sizes], rotation=30)
        axes.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axes.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axes.set_xlabel("frame size (log of the pixel count)")
        axes.set_ylabel("fps (engine only: upload + infer + download)")
        axes.set_title("fps vs resolution")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small")
        written.append(_save(plt, figure, json_path, "fps-vs-resolution"))
    curves = [r for r in results["graph"] if r["end_to_end_quantiles_ms"]]
    if len(curves) > 12:  # readable: one stream only
        curves = [r for r in curves if r["streams"] == 1]
    if curves:
        figure, axes = plt.subplots(figsize=(7, 4.5))
        quantiles = [q / 100 for q in range(101)]
        for r in curves:
            label = f"{r['restorers']} {r['engine']} {r['width']}x{r['height']} x{r['streams']}"
            axes.plot(r["end_to_end_quantiles_ms"], quantiles, label=label)
        budgets = sorted({r["budget_ms"] for r in curves})
        for budget in budgets:
            axes.axvline(budget, color="grey", linestyle="--", linewidth=1)
        axes.set_xlabel("capture-to-display latency of restored frames (ms)")
        axes.set_ylabel("fraction of frames")
        axes.set_title(
            f"end-to-end latency CDF (dashed: budget {', '.join(f'{b:.1f}' for b in budgets)} ms)"
        )
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
        written.append(_save(plt, figure, json_path, "latency-cdf"))
    return written, None if written else "nothing to plot"


def _save(plt: Any, figure: Any, json_path: Path, name: str) -> Path:
    """Write ``figure`` beside the JSON as ``STEM-NAME.png`` and free it."""
    path = json_path.parent / f"{json_path.stem}-{name}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
