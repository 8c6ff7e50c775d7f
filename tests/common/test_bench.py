import json

import pytest
import torch

from common.bench import machine_description, write_rows


def test_rows_round_trip_and_incomplete_rows_are_refused(tmp_path):
    rows = [{"project": "p", "workload": "w", "value": 1.5, "unit": "x/s", "target": 1.0, "higher_is_better": True,
             "note": ""}]
    write_rows(tmp_path / "rows.json", rows)
    assert json.loads((tmp_path / "rows.json").read_text()) == rows
    with pytest.raises(ValueError, match="unit"):
        write_rows(tmp_path / "bad.json", [{"project": "p", "workload": "w", "value": 1.0}])


def test_machine_description_names_cores_and_torch():
    text = machine_description()
    assert "cores" in text and torch.__version__ in text
