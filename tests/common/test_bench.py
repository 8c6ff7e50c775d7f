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


def test_finish_prints_machine_and_table_and_writes_rows(tmp_path, capsys):
    from common.bench import finish
    rows = [{"project": "p", "workload": "train step", "value": 12.5, "unit": "samples/s", "target": 10.0,
             "higher_is_better": True, "note": "median of 5"},
            {"project": "p", "workload": "wait share", "value": 0.2, "unit": "%", "target": 5.0,
             "higher_is_better": False, "note": ""},
            {"project": "p", "workload": "params", "value": 3.0, "unit": "M", "target": None, "note": ""}]
    assert finish(rows, tmp_path / "rows.json") is rows
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("machine: ") and "cores" in out[0]
    assert "train step" in out[2] and "12.5" in out[2] and "≥ 10" in out[2] and "median of 5" in out[2]
    assert "≤ 5" in out[3] and out[4].split()[-1] == "-"
    assert json.loads((tmp_path / "rows.json").read_text()) == rows
    finish(rows, None, table=False)
    assert len(capsys.readouterr().out.splitlines()) == 1  # the machine line only; no file written
