"""The command-line values every command shares, parsed without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from smokeclear.errors import UserError
from smokeclear.parsing import comma_list, parse_size, parse_weights, parse_work_scale


def test_parsing_imports_without_torch():
    code = "import sys; sys.modules['torch'] = None\nimport smokeclear.parsing\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"smokeclear.parsing must not need torch: {result.stderr}"


def test_values_parse_and_bad_ones_are_the_users_error():
    assert parse_size("1280X720") == (1280, 720)
    assert parse_work_scale("0.5") == 0.5
    assert comma_list(" a, b ,") == ("a", "b") and comma_list(None) is None
    assert parse_weights(["w.safetensors"], ["desmoke"]) == {"desmoke": Path("w.safetensors")}
    for bad in (
        lambda: parse_size("8x8"),
        lambda: parse_size("wide"),
        lambda: parse_work_scale("0.3"),
        lambda: comma_list(" , "),
        lambda: parse_weights(["w.safetensors"], ["desmoke", "lowlight"]),
        lambda: parse_weights(["enhance=w.safetensors"], ["desmoke"]),
    ):
        with pytest.raises(UserError):
            bad()
