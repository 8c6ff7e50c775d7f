"""vae_latent.headline: the demo's headline.json rows from the runs' metrics.json."""
import json

import pytest

from vae_latent import headline

METRICS = {"val/psnr": 15.3, "val/mse": 0.03, "val/pca_mse": 0.017, "val/pca_psnr": 18.1,
           "val/mean_image_mse": 0.037, "val/mean_image_psnr": 14.3, "val/pca_components": 32}


def write_run(folder, metrics):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_rows_hold_the_model_the_strongest_baseline_and_the_real_check(tmp_path):
    model = write_run(tmp_path / "demo", METRICS)
    # on the "real" run the mean image has the lower MSE, so it is the baseline named there
    real = write_run(tmp_path / "real", dict(METRICS, **{"val/psnr": 20.2, "val/mean_image_mse": 0.01,
                                                         "val/mean_image_psnr": 21.0}))
    assert headline.main([str(tmp_path / "out"), "--model", str(model), "--real", str(real)]) == 0
    rows = json.loads((tmp_path / "out/headline.json").read_text())["rows"]
    assert [r["kind"] for r in rows] == ["model", "baseline", "real"]
    assert [r["value"] for r in rows] == [15.3, 18.1, 20.2]
    assert rows[1]["name"].startswith("PCA-32") and rows[2]["baseline"] == {"name": "mean training image",
                                                                              "value": 21.0}
    assert rows[2]["name"].endswith("mean training image: 21.00 dB")
    assert all(r["metric"] == "val/psnr" and r["higher_is_better"] and r["command"] for r in rows)


def test_without_a_real_run_there_is_no_real_row_and_a_missing_run_is_named(tmp_path, capsys):
    model = write_run(tmp_path / "demo", METRICS)
    headline.main([str(tmp_path), "--model", str(model)])
    assert [r["kind"] for r in json.loads((tmp_path / "headline.json").read_text())["rows"]] == ["model", "baseline"]
    assert "no 'real' row" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="missing/metrics.json not found"):
        headline.main([str(tmp_path), "--model", str(tmp_path / "missing")])
