from vae_latent import test_setup


def test_missing_data_path_fails_with_a_clear_message(tmp_path, config_for, capsys):
    missing = tmp_path / "no_such_folder"
    code = test_setup.main(["--config", str(config_for(missing))])
    out = capsys.readouterr().out
    assert code == 1
    assert f"✗ data path: Data folder not found: {missing}" in out and "data_params.data_path" in out
    assert "✓ forward/backward" in out and "1 check(s) failed." in out


def test_all_checks_pass_on_readable_frames(frames_data, config_for, capsys):
    assert test_setup.main(["--config", str(config_for(frames_data))]) == 0
    out = capsys.readouterr().out
    assert "✗" not in out and "✓ batch: (4, 3, 16, 16)" in out and "✓ memory estimate" in out


def test_config_error_is_a_failed_check(capsys):
    assert test_setup.main(["--set", "exp_params.nope=1"]) == 1
    assert "✗ config: --set 'exp_params.nope=1': unknown config key 'exp_params.nope'" in capsys.readouterr().out
