import pytest

from omni_bench.errors import OmniBenchError
from omni_bench.units import convert


def test_energy_conversions_match_codata_based_ase_values():
    assert convert(1.0, "kcal/mol", "kJ/mol") == pytest.approx(4.184)
    assert convert(1.0, "eV", "kcal/mol") == pytest.approx(23.0605, rel=1e-5)
    assert convert(1.0, "Hartree", "eV") == pytest.approx(27.211386, rel=1e-6)
    assert convert(1.0, "eV/A^3", "GPa") == pytest.approx(160.21766, rel=1e-6)
    assert convert(1.0, "Ry", "eV") == pytest.approx(13.605693, rel=1e-6)
    assert convert(1.0, "kB", "J/K/mol") == pytest.approx(8.314463, rel=1e-6)  # the gas constant


def test_normalisation_suffix_is_kept_and_must_match():
    assert convert(2.0, "eV/atom", "meV/atom") == pytest.approx(2000.0)
    with pytest.raises(OmniBenchError, match="different dimensions"):
        convert(1.0, "eV/atom", "eV")
    with pytest.raises(OmniBenchError, match="different dimensions"):
        convert(1.0, "eV", "GPa")


def test_unknown_unit_lists_known_ones():
    with pytest.raises(OmniBenchError, match="unknown unit 'kcal'.*known:"):
        convert(1.0, "kcal", "eV")
