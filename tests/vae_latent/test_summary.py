from vae_latent import summary


def test_summary_prints_parts_and_ends_with_total_params(capsys):
    assert summary.main(["--config", "vae_latent/config_vae_sthv2.yaml"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "total_params: 62980803"
    assert any(line.strip().startswith("fc_mu") and "16,777,472" in line for line in lines)


def test_summary_follows_overrides(capsys):
    summary.main(["--set", "model_params.hidden_dims=[8,16]", "--set", "model_params.image_size=32",
                  "--set", "model_params.latent_dim=4"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    # encoder 3->8->16 convs + BN, heads 16*8*8 -> 4 (x2), decoder_input 4 -> 1024, one up stage, final layer
    expected = (3 * 8 * 9 + 8 + 16 + 8 * 16 * 9 + 16 + 32) + 2 * (1024 * 4 + 4) + (4 * 1024 + 1024) \
        + (16 * 8 * 9 + 8 + 16) + (8 * 8 * 9 + 8 + 16) + (8 * 3 * 9 + 3)
    assert last == f"total_params: {expected}"
