"""The training config: the guide's JSON snippets load as written, typed errors name the key, values are checked."""
import json
import re
from pathlib import Path

import pytest

from common.config import ConfigError
from stereo.train.augment import AUGMENTATION_DEFAULTS
from stereo.train.config import load_config

from tests.stereo.conftest import make_config

GUIDE = Path(__file__).resolve().parents[1] / "guides" / "text" / "stereo.txt"
CONFIGS = Path(__file__).resolve().parents[2] / "stereo" / "configs" / "train"


def guide_json_snippets() -> list[str]:
    """The ```json blocks of the guide, verbatim (with their // comments)."""
    return re.findall(r"```json\n(.*?)```", GUIDE.read_text(), flags=re.S)


def test_the_guides_snippets_load_as_written(tmp_path):
    snippets = guide_json_snippets()
    assert len(snippets) == 3  # model, data, loss
    # A user puts the three objects into one file: keep their text (comments included), join the top-level keys.
    bodies = [text.strip()[1:-1].strip() for text in snippets]
    path = tmp_path / "guide.json"
    path.write_text("{\n" + ",\n".join(bodies) + "\n}\n")
    config = load_config(path)
    assert config["model"] == {"max_disp": 192, "feature_type": "dinov2", "correlation_implementation": "alt",
                               "n_gru_layers": 3, "hidden_dims": [128, 128, 128]}
    entry = config["data"]["datasets"][0]
    assert entry["label_type"] == "stereo" and entry["image_augmentation"] == ["jittering"]
    assert config["data"]["image_sizes"] == [[512, 384], [640, 480]]  # [W, H]: 640×480 is VGA
    assert config["data"]["stereo_augmentation"] == AUGMENTATION_DEFAULTS  # `true`: the defaults
    terms = config["loss"]["stereo"]
    assert terms["disparity_l1"] == {"function": "disparity_l1", "weight": 1.0, "params": {"max_disparity": 192.0}}
    assert terms["multi_scale"]["function"] == "multi_scale" and terms["multi_scale"]["weight"] == 0.3
    # stereo_v1.json (the guide's "configs/train/stereo_v1.json") holds the same sections.
    v1 = load_config(CONFIGS / "stereo_v1.json")
    # ... plus where the pretrained parts come from (local files; the guide's model section cannot say).
    assert v1["model"] == {**config["model"], "vit_weights": "pretrained_models/depth_anything_v2_vitl.pth",
                           "edgenext_weights": "pretrained_models/edgenext_small.usi_in1k/model.safetensors"}
    assert v1["loss"] == config["loss"]
    assert v1["data"]["datasets"] == config["data"]["datasets"]


def test_stereo_augmentation_false_turns_everything_off(tmp_path, synth_dirs):
    config = load_config(make_config(tmp_path, *synth_dirs, data={"stereo_augmentation": False}))
    augmentation = config["data"]["stereo_augmentation"]
    assert not any(augmentation[key]["enabled"] for key in ("photometric", "scale", "y_jitter", "eraser"))
    assert augmentation["vflip_prob"] == augmentation["hflip_prob"] == 0.0


def _with(tmp_path, synth_dirs, edit) -> Path:
    path = make_config(tmp_path, *synth_dirs)
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["data"].update(max_dispx=3), "data.max_dispx"),
    (lambda c: c["data"]["datasets"][0].update(colour=1), r"data.datasets\[0\].colour"),
    (lambda c: c["data"]["datasets"][0].pop("path"), r"data.datasets\[0\].path"),
    (lambda c: c["data"]["datasets"][0].update(image_augmentation=["blurring"]),
     r"data.datasets\[0\].image_augmentation"),
    (lambda c: c["data"]["datasets"][0].update(label_type="lidar"), r"data.datasets\[0\].label_type.*loss group"),
    (lambda c: c["data"]["datasets"][0].update(format="zip"), r"data.datasets\[0\].format"),
    (lambda c: c["data"].update(image_sizes=[[64, 0]]), r"data.image_sizes\[0\]"),
    (lambda c: c["lr_scheduler"].update(warmup_steps=-5), "lr_scheduler.warmup_steps.*>= 0.*-5"),
    (lambda c: c["lr_scheduler"].update(warmup_steps="abc"), "lr_scheduler.warmup_steps"),
    (lambda c: c["train"].update(keep_last=1.5), "train.keep_last"),
    (lambda c: c["train"].update(ema_decay=1.0), "train.ema_decay"),
    (lambda c: c["optimizer"].update(type="Lion"), "optimizer.type"),
    (lambda c: c["loss"]["stereo"]["init"].update(wieght=2), "loss.stereo.init.wieght"),
    (lambda c: c["loss"]["stereo"]["init"].pop("function"), "loss.stereo.init.function"),
])
def test_errors_name_the_key(tmp_path, synth_dirs, edit, message):
    path = _with(tmp_path, synth_dirs, edit)
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_types_are_kept_and_a_flat_loss_applies_to_every_label_type(tmp_path, synth_dirs):
    def edit(config):
        config["data"]["datasets"][0]["path"] = "2024.10"  # a string stays a string
        config["data"]["datasets"][0]["label_type"] = "synthetic"
        config["data"]["max_disparity"] = 64
        config["loss"] = {"l1": {"function": "disparity_l1_loss"}}
    config = load_config(_with(tmp_path, synth_dirs, edit))
    assert config["data"]["datasets"][0]["path"] == "2024.10"
    assert config["data"]["max_disparity"] == 64.0 and isinstance(config["data"]["max_disparity"], float)
    assert config["loss"] == {"synthetic": {"l1": {"function": "disparity_l1", "weight": 1.0, "params": {}}}}


def test_a_missing_or_broken_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found.*nowhere.json"):
        load_config(tmp_path / "nowhere.json")
    (tmp_path / "bad.json").write_text('{"data": {"max_disparity": 3,}}')
    with pytest.raises(ConfigError, match="bad.json is not valid JSON"):
        load_config(tmp_path / "bad.json")
    (tmp_path / "url.json").write_text('{"data": {"datasets": [{"path": "http://host/x"}]}} // a comment')
    assert load_config(tmp_path / "url.json")["data"]["datasets"][0]["path"] == "http://host/x"  # // in a string
