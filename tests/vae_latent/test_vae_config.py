import pytest
import yaml

from common.config import ConfigError
from vae_latent.vae_config import SPEC_CONFIG, load_config, run_dir

SPEC_KEYS = {
    "exp_params": ["LR", "weight_decay", "scheduler_gamma", "kld_weight", "max_grad_norm"],
    "trainer_params": ["gpus", "max_epochs", "gradient_clip_val", "check_val_every_n_epoch", "log_every_n_steps"],
    "logging_params": ["save_dir", "name", "save_every_n_steps", "log_images_every_n_steps"],
}


def test_spec_config_has_the_five_sections_and_spec_keys():
    config = load_config(SPEC_CONFIG)
    assert list(config) == ["model_params", "data_params", "exp_params", "trainer_params", "logging_params"]
    for section, keys in SPEC_KEYS.items():
        assert set(keys) <= set(config[section]), section
    assert config["trainer_params"]["gpus"] == -1
    assert config["model_params"]["hidden_dims"] == [64, 128, 256, 512, 1024]
    assert str(run_dir(config)) == "logs_vae/VanillaVAE_sthv2"


def test_unknown_key_in_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"exp_params": {"LR": 0.1, "lr_warmup": 5}}))
    with pytest.raises(ConfigError, match="exp_params.lr_warmup"):
        load_config(path)
    path.write_text(yaml.safe_dump({"optim": {}}))
    with pytest.raises(ConfigError, match="'optim'"):
        load_config(path)


def test_overrides_change_values_and_unknown_override_is_an_error(tmp_path):
    config = load_config(None, ["exp_params.LR=3e-4", "model_params.hidden_dims=[8,16]", "logging_params.name=x"])
    assert config["exp_params"]["LR"] == 3e-4
    assert config["model_params"]["hidden_dims"] == [8, 16]
    assert config["logging_params"]["name"] == "x"
    with pytest.raises(ConfigError, match="trainer_params.max_epoch"):
        load_config(None, ["trainer_params.max_epoch=3"])


@pytest.mark.parametrize("override,match", [
    ("data_params.frames_per_video=some", "frames_per_video"),
    ("trainer_params.gpus=-2", "gpus"),
    ("data_params.train_batch_size=0", "train_batch_size"),
    ("exp_params.max_grad_norm=-1", "max_grad_norm"),
    ("model_params.hidden_dims=[]", "hidden_dims"),
])
def test_bad_values_are_errors_naming_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_a_string_stays_the_text_written_and_a_bool_must_be_one():
    assert load_config(None, ["logging_params.name=2024.10"])["logging_params"]["name"] == "2024.10"
    with pytest.raises(ConfigError, match="data_params.pin_memory' expects true or false, got 'maybe'"):
        load_config(None, ["data_params.pin_memory=maybe"])
    with pytest.raises(ConfigError, match="data_params.train_batch_size' expects an integer, got 'abc'"):
        load_config(None, ["data_params.train_batch_size=abc"])
