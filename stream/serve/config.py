"""The daemon's YAML: one ``server`` section and a list of ``pipelines``.

Loaded into frozen dataclasses by :func:`smokeclear.config.from_mapping`, so an
unknown key, a wrong type or a value out of range is one line naming the file and
the key (``serve.yaml:pipelines[1].fps must be in [1, 1000], got 0``)::

    server: {host: 127.0.0.1, port: 8600, token_file: /etc/smokeclear/token}
    pipelines:
      - name: or1
        source: /dev/video0          # any source `smokeclear run --source` takes
        restorer: desmoke            # or a chain: desmoke,lowlight
        fps: 60
        size: 1920x1080
        display: window              # window (full screen) or none
        record: {dir: /var/lib/smokeclear/recordings, segment_seconds: 60, min_free_gb: 5,
                 delete_oldest: true}
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from smokeclear.config import bounded, from_mapping, read_yaml
from smokeclear.engines.select import BACKENDS
from smokeclear.errors import UserError
from smokeclear.parsing import parse_size, parse_work_scale

PIPELINE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
DISPLAYS = ("none", "window")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = bounded(8600, 0, 65535)  # 0: any free port (tests)
    token_file: str | None = None  # required unless host is a loopback address
    max_body_bytes: int = bounded(4096, 64, 1_048_576)  # larger request bodies get 413
    preview_fps: float = bounded(5.0, 0.5, 30.0)  # MJPEG preview rate
    preview_width: int = bounded(640, 64, 3840)  # preview frames are scaled down to this
    max_previews: int = bounded(4, 1, 32)  # previews watched at once; more get 429


@dataclass(frozen=True)
class RecordConfig:
    dir: str
    segment_seconds: float = bounded(60.0, 1.0, 86_400.0)
    min_free_gb: float | None = bounded(None, 0.0, 1e6)
    # Below min_free_gb: delete this pipeline's oldest recordings first (else stop recording).
    delete_oldest: bool = False
    autostart: bool = True  # record from the moment the pipeline starts


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    source: str = "synthetic"
    restorer: str = "desmoke"
    fps: float | None = bounded(None, 1.0, 1000.0)
    size: str | None = None  # WIDTHxHEIGHT; None: the source's own
    display: str = "none"  # one of DISPLAYS
    backend: str = "auto"
    device: str | None = None  # cpu or cuda; None: the GPU when there is one
    work_scale: str | None = None  # 1, 0.5 or 0.25; None: the device's default
    budget_ms: float | None = bounded(None, 1.0, 60_000.0)
    view: str = "processed"
    record: RecordConfig | None = None


@dataclass(frozen=True)
class ServeConfig:
    server: ServerConfig
    pipelines: tuple[PipelineConfig, ...]
    path: Path  # where it was read from (errors, SIGHUP)


def load_serve_config(path: Path) -> ServeConfig:
    """Read and check ``path``; every problem is a UserError naming the file and key."""
    data = read_yaml(path)
    unknown = sorted(set(data) - {"server", "pipelines"})
    if unknown:
        raise UserError(
            f"unknown key {unknown[0]!r} in {path}", "Valid keys there are: pipelines, server."
        )
    server = from_mapping(ServerConfig, data.get("server") or {}, f"{path}:server")
    pipelines = data.get("pipelines")
    if not isinstance(pipelines, list) or not pipelines:
        raise UserError(
            f"{path}:pipelines must be a list of at least one pipeline",
            "Add `pipelines:` with `- name: or1` and `source: /dev/video0` under it.",
        )
    parsed = tuple(
        check_pipeline(
            from_mapping(PipelineConfig, entry, f"{path}:pipelines[{index}]"),
            f"{path}:pipelines[{index}]",
        )
        for index, entry in enumerate(pipelines)
    )
    names = [pipeline.name for pipeline in parsed]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise UserError(
                f"{path}:pipelines[{index}].name {name!r} is used twice",
                "Give every pipeline its own name.",
            )
    windows = [p.name for p in parsed if p.display == "window"]
    if len(windows) > 1:
        raise UserError(
            f"{path}: pipelines {', '.join(windows)} all have display: window",
            "One process drives one window (OpenCV's GUI is single-threaded): run a second "
            "daemon with its own config for the second monitor, or set display: none.",
        )
    return ServeConfig(server, parsed, path)


def check_pipeline(pipeline: PipelineConfig, where: str) -> PipelineConfig:
    """The checks :func:`from_mapping` cannot make: names, choices, restorers, sizes."""
    from smokeclear.registry import parse_chain
    from smokeclear.stream.live import VIEWS

    if not PIPELINE_NAME.match(pipeline.name):
        raise UserError(
            f"{where}.name {pipeline.name!r} is not a usable name",
            "Use up to 32 lowercase letters, digits, - and _ (it names files and URLs), e.g. or1.",
        )
    choices = {"display": DISPLAYS, "backend": BACKENDS, "view": VIEWS}
    for key, allowed in choices.items():
        if getattr(pipeline, key) not in allowed:
            raise UserError(
                f"{where}.{key} {getattr(pipeline, key)!r} is not one of {', '.join(allowed)}",
                "Correct that value in the config file.",
            )
    if pipeline.device not in (None, "cpu", "cuda"):
        raise UserError(f"{where}.device {pipeline.device!r} is not cpu or cuda", "Correct it.")
    for key, parse in (("restorer", parse_chain), ("size", parse_size)):
        value = getattr(pipeline, key)
        if value is not None:
            try:
                parse(value)
            except UserError as error:
                raise UserError(f"{where}.{key}: {error.problem}", error.fix) from None
    if pipeline.work_scale is not None:
        try:
            parse_work_scale(pipeline.work_scale)
        except UserError as error:
            raise UserError(f"{where}.work_scale: {error.problem}", error.fix) from None
    record = pipeline.record
    if record is not None and not Path(record.dir).is_dir():
        raise UserError(
            f"{where}.record.dir {record.dir} is not a folder",
            f"Create it (mkdir -p {record.dir}) and let the daemon's user write to it.",
        )
    if record is not None and record.delete_oldest and record.min_free_gb is None:
        raise UserError(
            f"{where}.record.delete_oldest needs min_free_gb",
            "Set min_free_gb: the free space to keep, e.g. 5.",
        )
    return pipeline


def with_overrides(
    config: ServeConfig, host: str | None, port: int | None, token_file: Path | None
) -> ServeConfig:
    """The command line's --host, --port and --token-file over the file's values."""
    changes: dict[str, object] = {}
    if host is not None:
        changes["host"] = host
    if port is not None:
        if not 0 <= port <= 65535:
            raise UserError(f"--port {port} is out of range", "Use a port from 1 to 65535.")
        changes["port"] = port
    if token_file is not None:
        changes["token_file"] = str(token_file)
    return dataclasses.replace(config, server=dataclasses.replace(config.server, **changes))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def read_token(server: ServerConfig, where: Path) -> str | None:
    """The API token; None when there is none (allowed on a loopback address only).

    Refuses a token file that group or others can read: it guards patient video.
    """
    if server.token_file is None:
        if not is_loopback(server.host):
            raise UserError(
                f"{where}: server.host is {server.host} and there is no token_file",
                "Anyone on that network could watch and switch the display: set "
                "server.token_file (or --token-file) to a file holding a secret token, "
                "e.g. `openssl rand -hex 32 > /etc/smokeclear/token`, or bind to 127.0.0.1.",
            )
        return None
    path = Path(server.token_file)
    try:
        mode = path.stat().st_mode
        token = path.read_text().strip()
    except OSError as error:
        raise UserError(
            f"cannot read token file {path}: {error.strerror or error}",
            "Create it with `openssl rand -hex 32 > FILE && chmod 600 FILE`.",
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(
            f"token file {path} is readable by other users (mode {stat.S_IMODE(mode):o})",
            f"Run `chmod 600 {path}` (owned by the daemon's user).",
        )
    if len(token) < 16 or any(character.isspace() for character in token):
        raise UserError(
            f"token file {path} must hold one token of at least 16 characters, no spaces",
            f"Write one: `openssl rand -hex 32 > {path}`.",
        )
    return token
