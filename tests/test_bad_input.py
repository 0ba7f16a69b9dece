"""Bad input gives one clear error naming the file and the field; nothing is computed on it."""

from __future__ import annotations

import math

import pytest
from ase.build import molecule

from omni_bench.errors import OmniBenchError
from omni_bench.items import Item, Quantity
from omni_bench.runner import check_items
from omni_bench.task_registry import all_tasks


def dimer_item(item_id: str, reference: Quantity) -> Item:
    water = molecule("H2O")
    return Item(item_id, {"complex": water + water, "monomer_1": water, "monomer_2": water},
                reference={"interaction_energy": reference})


def test_missing_reference_value_names_task_item_and_quantity():
    spec = all_tasks()["s22"]
    with pytest.raises(OmniBenchError, match="item 'w2' has no valid reference interaction_energy"):
        check_items(spec, [dimer_item("w1", Quantity(-0.2, "eV")), dimer_item("w2", Quantity(math.nan, "eV"))])


def test_reference_in_a_unit_of_another_dimension_names_the_task_file_field():
    spec = all_tasks()["s22"]
    with pytest.raises(OmniBenchError) as info:
        check_items(spec, [dimer_item("w1", Quantity(1.0, "GPa"))])
    message = str(info.value)
    assert str(spec.path) in message and "'units.interaction_energy'" in message and "'GPa'" in message


def test_duplicate_item_ids_are_refused():
    spec = all_tasks()["s22"]
    with pytest.raises(OmniBenchError, match="item id 'w1' appears twice"):
        check_items(spec, [dimer_item("w1", Quantity(-0.2, "eV"))] * 2)
