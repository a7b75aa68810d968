"""Offline restoration of an image, a folder of images or a video: every frame.

Uses the same engines as the live path, one frame at a time. Stills are written
losslessly (PNG or TIFF); videos keep their frame rate (audio is not carried over).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from smokeclear.engines.base import Engine
from smokeclear.engines.output_guard import guarded_download
from smokeclear.errors import UserError
from smokeclear.parsing import refuse_overwriting
from smokeclear.runtime import EngineRequest, create_engine
from smokeclear.stills import (
    StillError,
    check_writable_folder,
    read_still,
    restore_still,
    write_still,
)
from smokeclear.stream.recording import VideoWriter, check_container, write_errors
from smokeclear.stream.sources import to_bgr8
from smokeclear.stream.sources.folder import IMAGE_SUFFIXES, image_files
from smokeclear.stream.sources.opencv import VideoFileSource

log = logging.getLogger(__name__)

LOSSLESS_SUFFIXES = (".png", ".tif", ".tiff")


def check_unique_stems(files: list[Path]) -> None:
    """UserError when two inputs would be written to one ``STEM.png`` (x.jpg and x.png)."""
    by_stem: dict[str, list[str]] = {}
    for path in files:
        by_stem.setdefault(path.stem, []).append(path.name)
    clashes = [names for names in by_stem.values() if len(names) > 1]
    if clashes:
        listed = "; ".join(" and ".join(names) for names in clashes)
        raise UserError(
            f"{listed} would be written to the same output file",
            "Rename one of each pair, or restore them into separate folders.",
        )


def restore(input_path: Path, output_path: Path, request: EngineRequest) -> int:
    """Restore ``input_path`` into ``output_path``; returns the number of frames written."""
    if not input_path.exists():
        raise UserError(f"input {input_path} does not exist", "Check the path.")
    refuse_overwriting(output_path, input_path, "restore output")
    if input_path.is_dir():
        kind = "folder"
        files = image_files(input_path)
        if not files:
            raise UserError(
                f"no images in {input_path}", f"Put {', '.join(IMAGE_SUFFIXES)} files there."
            )
        check_unique_stems(files)
        if output_path.exists() and not output_path.is_dir():
            raise UserError(
                f"output {output_path} is a file, but the input is a folder",
                "Give a folder (it is created if missing).",
            )
        make_output_folder(output_path)
    elif input_path.suffix.lower() in IMAGE_SUFFIXES:
        kind = "image"
        if output_path.suffix.lower() not in LOSSLESS_SUFFIXES:
            raise UserError(
                f"output {output_path.name} is not a lossless still format",
                "Write stills as .png (or .tif), e.g. restored.png.",
            )
        check_writable_folder(output_path.parent)
    else:
        kind = "video"
        check_container(output_path, "write")
    engine, choice = create_engine(request)
    log.info(
        "restoring %s %s with %s on %s (%s) at work scale %g",
        kind,
        input_path,
        request.label,
        engine.name,
        choice.reason,
        request.work_scale,
    )
    started = time.monotonic()
    if kind == "image":
        count = _restore_stills(engine, [input_path], lambda _: output_path)
    elif kind == "folder":
        count = _restore_stills(engine, files, lambda p: output_path / f"{p.stem}.png")
    else:
        count = _restore_video(engine, input_path, output_path)
    seconds = time.monotonic() - started
    log.info(
        "%d frame(s) written to %s in %.1f s (%.1f fps)",
        count,
        output_path,
        seconds,
        count / seconds if seconds else 0.0,
    )
    engine.close()
    return count


def _run(engine: Engine, image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    tensor = engine.infer(engine.upload(image))
    output, problem = guarded_download(engine, tensor, image, height, width)
    if problem is not None:  # never written as if restored (the output guard)
        raise UserError(
            f"restorer output for this frame is {problem}",
            "Check the weights (--weights) and the backend (try --backend torch or onnxruntime); "
            "re-export or re-download the model.",
        )
    return output


def make_output_folder(folder: Path) -> None:
    """Create ``folder`` if missing; UserError, before any work, when stills cannot go there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create output folder {folder}: {error.strerror or error}",
            "Choose a folder you can write to.",
        ) from None
    check_writable_folder(folder)


def _restore_stills(engine: Engine, files: list[Path], target) -> int:
    """Restore every still it can and write each good one; then, if any failed, one
    UserError that names them, after a warning per failure (name and reason)."""
    started_at: tuple[int, int] | None = None
    failures: list[StillError] = []
    for path in files:
        try:
            image = read_still(path)
            if started_at != image.shape[:2]:
                engine.start(*image.shape[:2])
                started_at = image.shape[:2]
            restored = restore_still(image, lambda bgr8: _run(engine, bgr8))
        except StillError as failure:
            failures.append(failure)
            continue
        except UserError as error:  # the output guard refusing this frame
            if len(files) == 1:
                raise
            failures.append(StillError(path, error.problem))
            continue
        write_still(target(path), restored)
    if len(files) == 1 and failures:
        raise UserError(
            f"cannot restore {files[0]}: {failures[0].reason}",
            "Give a readable 8- or 16-bit grey, RGB or RGBA image.",
        )
    if failures:
        for failure in failures:
            log.warning("not restored: %s", failure)
        raise UserError(
            f"{len(failures)} of {len(files)} images not restored: "
            + ", ".join(failure.path.name for failure in failures),
            f"The other {len(files) - len(failures)} were written; the reasons are listed above.",
        )
    return len(files)


def _restore_video(engine: Engine, input_path: Path, output_path: Path) -> int:
    """Every frame of ``input_path`` restored into ``output_path``, at its exact size.

    SIGINT and SIGTERM stop it as they stop ``run``: the frames so far are finalised
    under the final name and the count is logged. A failed write (a full disk) is a
    UserError; what was written stays playable in the partial file.
    """
    from smokeclear.stream.live import stop_on_signals

    if not output_path.parent.is_dir():
        raise UserError(
            f"folder {output_path.parent} does not exist",
            "Create it or choose another output path.",
        )
    source = VideoFileSource(input_path)
    source.open()
    try:
        writer = VideoWriter(output_path, source.width, source.height, source.fps or 30.0)
    except BaseException:
        source.close()
        raise
    engine.start(source.height, source.width)
    count = 0
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            while not stop.is_set() and (raw := source.read()) is not None:
                image = to_bgr8(raw)
                if image.shape[:2] != (source.height, source.width):
                    image = cv2.resize(image, (source.width, source.height))
                writer.write(_run(engine, image))
                count += 1
                if count % 100 == 0:
                    log.info("%d frames", count)
    except write_errors() as error:
        kept = writer.close(complete=False)
        raise UserError(
            f"cannot write {output_path}: {error}; the frames written before it are in {kept}",
            "Free space on that disk or choose another output folder.",
        ) from None
    except BaseException:
        kept = writer.close(complete=False)
        log.error("restore failed after %d frame(s); they are in %s", count, kept)
        raise
    finally:
        source.close()
    where = writer.close()
    if stop.is_set():
        log.warning(
            "restore stopped early: %d of %s frame(s) written to %s (finalised)",
            count,
            source.frame_count or "?",
            where,
        )
    return count
