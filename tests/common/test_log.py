import json
import logging

from common.log import Writer, read_metrics, setup_logger, write_metrics


def test_logger_writes_to_stdout_and_file_on_main(tmp_path, capsys):
    logger = setup_logger(tmp_path, name="t_main", is_main=True)
    logger.info("hello %d", 7)
    assert "hello 7" in (tmp_path / "log.txt").read_text()
    assert "hello 7" in capsys.readouterr().out


def test_project_module_loggers_reach_the_run_log(tmp_path):
    setup_logger(tmp_path, name="t_pkg", is_main=True, packages=("someproject",))
    logging.getLogger("someproject.data").info("skipped %d files", 3)
    logging.getLogger("common.checkpoint").warning("fell back")
    logging.getLogger("otherproject.x").info("not routed")
    text = (tmp_path / "log.txt").read_text()
    assert "skipped 3 files" in text and "fell back" in text and "not routed" not in text


def test_logger_is_silent_off_main(tmp_path, capsys):
    logger = setup_logger(tmp_path / "r1", name="t_other", is_main=False)
    logger.warning("should not appear")
    assert capsys.readouterr().out == "" and not (tmp_path / "r1").exists()


def test_metrics_json_is_flat_and_json_safe(tmp_path):
    import torch
    write_metrics(tmp_path, {"val/psnr": torch.tensor(21.5), "val/mse": 0.01, "val/bad": float("nan"), "epoch": 3})
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data == {"val/psnr": 21.5, "val/mse": 0.01, "val/bad": None, "epoch": 3.0}
    assert read_metrics(tmp_path)["val/psnr"] == 21.5


def test_writer_writes_events_on_main_and_nothing_when_disabled(tmp_path):
    import numpy as np
    writer = Writer(tmp_path / "tb", enabled=True)
    writer.scalar("loss", 1.0, 0)
    writer.scalars({"a": 1, "b": 2}, 0, prefix="val/")
    writer.image("grid", np.zeros((4, 4, 3), np.uint8), 0)
    writer.histogram("h", np.arange(10.0), 0)
    writer.close()
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1
    silent = Writer(tmp_path / "tb_off", enabled=False)
    silent.scalar("loss", 1.0, 0)
    silent.close()
    assert not (tmp_path / "tb_off").exists()
