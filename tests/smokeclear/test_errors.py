"""User errors: one line naming the problem and the fix, exit status 2."""

import pytest

from smokeclear.errors import UserError, exit_status


def test_exit_status_passes_the_tools_own_status_through():
    assert exit_status("tool", lambda: 0) == 0
    assert exit_status("tool", lambda: 3) == 3


def test_exit_status_turns_a_user_error_into_one_line_and_2(capsys):
    def main() -> int:
        raise UserError("weights file w.safetensors does not exist", "Pass --weights.")

    assert exit_status("tool", main) == 2
    assert capsys.readouterr().err == (
        "tool: error: weights file w.safetensors does not exist. Pass --weights.\n"
    )


def test_exit_status_lets_bugs_through():
    def main() -> int:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        exit_status("tool", main)
