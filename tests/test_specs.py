import pytest

from phasediff.errors import PhasediffError
from phasediff.specs import parse_list, parse_spec, spec_key, take_params


def test_parse_spec_splits_name_and_params():
    assert parse_spec("grf:L=27,ell=3") == ("grf", {"L": "27", "ell": "3"})
    assert parse_spec("MNIST") == ("mnist", {})


@pytest.mark.parametrize("bad", ["", ":L=3", "grf:L", "grf:L=", "grf:=3", "grf:L=1,L=2"])
def test_parse_spec_refuses_bad_syntax(bad):
    with pytest.raises(PhasediffError):
        parse_spec(bad)


def test_take_params_types_defaults_and_errors():
    schema = {"L": (int, ...), "ell": (float, 2.0)}
    assert take_params("s", {"L": "5"}, schema) == {"L": 5, "ell": 2.0}
    with pytest.raises(PhasediffError, match="required"):
        take_params("s", {}, schema)
    with pytest.raises(PhasediffError, match="unknown parameter"):
        take_params("s", {"L": "5", "x": "1"}, schema)
    with pytest.raises(PhasediffError, match="not a valid"):
        take_params("s", {"L": "five"}, schema)
    with pytest.raises(PhasediffError, match="finite"):
        take_params("s", {"L": "5", "ell": "nan"}, schema)


def test_parse_list_ranges_are_inclusive_and_clean():
    assert parse_list("0:1:0.1") == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert parse_list("1:12", int) == list(range(1, 13))
    assert parse_list("1,3,6", int) == [1, 3, 6]
    assert parse_list("0:0.2:0.1,0.9") == [0.0, 0.1, 0.2, 0.9]


@pytest.mark.parametrize("bad", ["", "a", "1:0", "0:1:0", "0:1:-1", "1:2:3:4", "nan"])
def test_parse_list_refuses_bad_input(bad):
    with pytest.raises(PhasediffError):
        parse_list(bad)


def test_spec_key_compares_numbers_as_numbers():
    assert spec_key("ising:L=32,T=3.0") == spec_key("ising: T=3, L=32")
    assert spec_key("ising:L=32,T=3.0") != spec_key("ising:L=32,T=3.01")
    assert spec_key("gmm:data=mnist") != spec_key("gmm:data=fashion-mnist")
