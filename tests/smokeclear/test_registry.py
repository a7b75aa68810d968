import pytest

from smokeclear.errors import UserError
from smokeclear.registry import get_restorer, parse_chain


def test_unknown_restorer_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown restorer 'desmok'") as error:
        get_restorer("desmok")
    assert "desmoke" in error.value.fix


def test_chains_parse_in_order():
    assert [s.name for s in parse_chain("desmoke, desmoke")] == ["desmoke", "desmoke"]
    with pytest.raises(UserError, match="bad restorer list"):
        parse_chain("desmoke,,")
