"""The daemon's YAML and command line: every mistake is one line naming the file and key."""

from __future__ import annotations

import builtins
import dataclasses
from pathlib import Path

import pytest
import yaml

from smokeclear.cli import main
from smokeclear.errors import UserError
from smokeclear.stream.serve.config import load_serve_config, read_token, with_overrides

from .conftest import PIPELINE, write_config


def config_file(tmp_path: Path, pipelines=None, **server) -> Path:
    return write_config(tmp_path, pipelines or [{"name": "or1", **PIPELINE}], **server)


def test_the_issue_example_loads(tmp_path):
    (tmp_path / "rec").mkdir()
    path = tmp_path / "serve.yaml"
    path.write_text(
        "server: {host: 127.0.0.1, port: 8600}\n"
        "pipelines:\n"
        "  - name: or1\n"
        "    source: /dev/video0\n"
        "    restorer: desmoke,lowlight\n"
        "    fps: 60\n"
        "    size: 1920x1080\n"
        "    display: window\n"
        f"    record: {{dir: {tmp_path / 'rec'}, segment_seconds: 60, min_free_gb: 5}}\n"
    )
    config = load_serve_config(path)
    (pipeline,) = config.pipelines
    assert pipeline.record is not None and pipeline.record.min_free_gb == 5
    assert config.server.port == 8600 and read_token(config.server, path) is None


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ({"name": "or1", "fps": 0}, r"serve.yaml:pipelines\[0\].fps must be in \[1, 1000\]"),
        ({"name": "or1", "colour": "red"}, r"unknown key 'colour' in .*serve.yaml:pipelines\[0\]"),
        ({"name": "or1", "restorer": "nope"}, r"pipelines\[0\].restorer: unknown restorer 'nope'"),
        ({"name": "or1", "size": "big"}, r"pipelines\[0\].size"),
        ({"name": "OR 1"}, r"pipelines\[0\].name 'OR 1' is not a usable name"),
        ({"name": "or1", "display": "tv"}, r"pipelines\[0\].display 'tv' is not one of"),
        ({"name": "or1", "record": {"dir": "/no/such/dir"}}, r"record.dir /no/such/dir"),
        ({"name": "or1", "fps": "fast"}, r"pipelines\[0\].fps must be a number"),
    ],
)
def test_bad_pipelines_name_the_file_and_key(tmp_path, pipeline, message):
    with pytest.raises(UserError, match=message):
        load_serve_config(config_file(tmp_path, [pipeline]))


def test_duplicate_names_and_two_windows_are_refused(tmp_path):
    twice = [{"name": "or1"}, {"name": "or1"}]
    with pytest.raises(UserError, match=r"pipelines\[1\].name 'or1' is used twice"):
        load_serve_config(config_file(tmp_path, twice))
    windows = [{"name": "a", "display": "window"}, {"name": "b", "display": "window"}]
    with pytest.raises(UserError, match="a, b all have display: window"):
        load_serve_config(config_file(tmp_path, windows))


def test_no_pipelines_and_unknown_sections_are_refused(tmp_path):
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({"server": {}, "pipelines": []}))
    with pytest.raises(UserError, match=r"serve.yaml:pipelines must be a list"):
        load_serve_config(path)
    path.write_text(yaml.safe_dump({"servers": {}, "pipelines": [{"name": "a"}]}))
    with pytest.raises(UserError, match="unknown key 'servers'"):
        load_serve_config(path)
    path.write_text(yaml.safe_dump({"server": {"port": 70000}, "pipelines": [{"name": "a"}]}))
    with pytest.raises(UserError, match=r"serve.yaml:server.port must be in \[0, 65535\]"):
        load_serve_config(path)


def test_a_token_file_others_can_read_is_refused_with_the_chmod_fix(tmp_path):
    config = load_serve_config(config_file(tmp_path))
    (tmp_path / "token").chmod(0o644)
    with pytest.raises(UserError, match=r"token file .*token is readable by other users") as caught:
        read_token(config.server, config.path)
    assert f"chmod 600 {tmp_path / 'token'}" in str(caught.value)


def test_binding_beyond_loopback_needs_a_token_file(tmp_path):
    path = config_file(tmp_path)
    config = with_overrides(load_serve_config(path), "0.0.0.0", None, None)
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, token_file=None))
    with pytest.raises(UserError, match=r"server\.host is 0\.0\.0\.0 and there is no token_file"):
        read_token(config.server, path)
    loopback = with_overrides(config, "127.0.0.1", 9000, None)
    assert read_token(loopback.server, path) is None and loopback.server.port == 9000


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    status = main(argv)
    return status, capsys.readouterr().err.strip()


def test_cli_errors_are_one_line(tmp_path, capsys):
    path = config_file(tmp_path)
    (tmp_path / "token").chmod(0o640)
    status, err = run_cli(["serve", "--config", str(path), "--host", "0.0.0.0"], capsys)
    assert status == 2 and len(err.splitlines()) == 1 and "chmod 600" in err
    status, err = run_cli(["serve", "--config", str(tmp_path / "missing.yaml")], capsys)
    assert status == 2 and len(err.splitlines()) == 1 and "missing.yaml" in err


def test_cli_without_the_extra_names_it(tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_fastapi(name, *args, **kwargs):
        if name == "fastapi":
            raise ImportError("No module named 'fastapi'", name="fastapi")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fastapi)
    status, err = run_cli(["serve", "--config", str(config_file(tmp_path))], capsys)
    assert status == 2 and len(err.splitlines()) == 1
    assert 'pip install "smokeclear[serve]"' in err


def test_cli_refuses_a_port_in_use(tmp_path, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", "--config", str(config_file(tmp_path)), "--port", str(port)]
        status, err = run_cli(argv, capsys)
    assert status == 2 and f"cannot listen on 127.0.0.1:{port}" in err
