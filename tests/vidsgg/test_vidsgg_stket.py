"""STKET: priors counted on a hand-built annotation set, the prior file (errors, computed when missing, the
script), forward/backward per mode, every STKET flag changing the model or the loss, flags refused, the object
history behind the temporal prior and the ensemble, checkpoint round trip, paper-size parameter count, and a
short PredCLS training beating random weights."""
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vidsgg
from vidsgg import summary, train
from vidsgg import test as test_script
from vidsgg.data.action_genome import ActionGenome
from vidsgg.models.build import build_model
from vidsgg.models.priors import PriorFileError, count_priors, read_prior_file, write_prior_file
from vidsgg.models.stket import STKET, object_history
from vidsgg.options import train_parser
from vidsgg.option_checks import validate
from vidsgg.scripts import compute_priors

from tests.vidsgg.test_vidsgg_models import tiny_entry
from tests.vidsgg.test_vidsgg_train import TINY

# STKET takes -enc_layer_num / -dec_layer_num instead of -spatial_layer / -temporal_layer.
TINY_STKET = [f for i, f in enumerate(TINY) if "-temporal_layer" not in (f, TINY[i - 1])]
ALL_PRIORS = ["-use_spatial_prior", "-spatial_prior_loss", "-use_temporal_prior", "-temporal_prior_loss"]
BOOK, CHAIR = 5, 8
HOLDING, NOT_CONTACTING, SITTING_ON, TOUCHING = 5, 8, 10, 12


def obj(cls, attention, spatial, contacting):
    return {"class": cls, "bbox": None, "attention_relationship": torch.tensor(attention),
            "spatial_relationship": torch.tensor(spatial), "contacting_relationship": torch.tensor(contacting)}


def person():
    return {"person_bbox": None}


def hand_built_videos():
    video_a = [[person(), obj(BOOK, [0], [2], [HOLDING]), obj(CHAIR, [1], [1], [SITTING_ON])],
               [person(), obj(BOOK, [0], [2], [HOLDING, TOUCHING])],
               [person(), obj(BOOK, [1], [0], [NOT_CONTACTING]), obj(CHAIR, [1], [1], [SITTING_ON])],
               [person()]]
    # The second book is 3 frames after the first: too far back to count as its previous state.
    video_b = [[person(), obj(BOOK, [2], [3, 4], [NOT_CONTACTING])], [person()], [person()],
               [person(), obj(BOOK, [0], [2], [HOLDING])]]
    return [video_a, video_b]


def columns(values: dict) -> torch.Tensor:
    """26-d vector from {column: value}; columns 0-2 attention, 3-8 spatial (3 + s), 9-25 contacting (9 + c)."""
    row = torch.zeros(26, dtype=torch.float64)
    for column, value in values.items():
        row[column] = value
    return row


def test_priors_match_counts_on_hand_built_annotations(tmp_path):
    counts = count_priors(hand_built_videos())
    assert counts["objects"][BOOK] == 5 and counts["objects"][CHAIR] == 2 and counts["objects"].sum() == 7
    # Books: attention 0,0,1,2,0; spatial 2,2,0,{3,4},2; contacting 5,{5,12},8,8,5.
    torch.testing.assert_close(counts["initial"][BOOK], columns(
        {0: .6, 1: .2, 2: .2, 3: .2, 5: .6, 6: .2, 7: .2, 9 + HOLDING: .6, 9 + TOUCHING: .2, 9 + NOT_CONTACTING: .4}))
    # Transitions: book holding -> frame 1 and frame 2 books, book touching -> frame 2 book, chair sitting_on ->
    # frame 2 chair (2 frames later still counts); the second video's books are 3 frames apart: none.
    assert counts["transitions"][BOOK, HOLDING] == 2 and counts["transitions"][BOOK, TOUCHING] == 1
    assert counts["transitions"][CHAIR, SITTING_ON] == 1 and counts["transitions"].sum() == 4
    frame2_book = columns({1: 1, 3: 1, 9 + NOT_CONTACTING: 1})
    torch.testing.assert_close(counts["specific"][BOOK, HOLDING],
                               (columns({0: 1, 5: 1, 9 + HOLDING: 1, 9 + TOUCHING: 1}) + frame2_book) / 2)
    torch.testing.assert_close(counts["specific"][BOOK, TOUCHING], frame2_book)
    torch.testing.assert_close(counts["specific"][CHAIR, SITTING_ON], columns({1: 1, 4: 1, 9 + SITTING_ON: 1}))
    assert counts["specific"][BOOK, NOT_CONTACTING].abs().sum() == 0  # nothing follows a not_contacting book

    path = tmp_path / "TrainPrior.json"
    write_prior_file(path, counts)
    data = json.loads(path.read_text())  # STKET's layout: class index keys, one specific row per c_rel_idx
    assert set(data) == {str(BOOK), str(CHAIR)} and data[str(BOOK)]["obj_cls_name"] == "book"
    book = data[str(BOOK)]
    assert book["c_rel_idx"] == [HOLDING, TOUCHING] and book["c_rel_name"] == ["holding", "touching"]
    assert len(data[str(BOOK)]["specific_prior"]) == 2 and len(data[str(BOOK)]["initial_prior"]) == 26
    loaded = read_prior_file(path)
    torch.testing.assert_close(loaded["initial"], counts["initial"].float())
    torch.testing.assert_close(loaded["specific"], counts["specific"].float())
    assert [p.name for p in tmp_path.iterdir()] == ["TrainPrior.json"]  # no temporary file left behind


@pytest.mark.parametrize("content, message", [
    ("{}", "holds no object classes"), ("[1, 2]", "expected an object keyed by object class index"),
    ("{\"5\": ", "not valid JSON"), ("{\"0\": {}}", "not an object class index"),
    ("{\"5\": {\"c_rel_idx\": [], \"specific_prior\": []}}", "has no ['initial_prior']"),
    ("{\"5\": {\"c_rel_idx\": [3], \"specific_prior\": [], \"initial_prior\": " + json.dumps([0.0] * 26) + "}}",
     "same length"),
    ("{\"5\": {\"c_rel_idx\": [], \"specific_prior\": [], \"initial_prior\": [1, 2]}}", "initial_prior must be"),
])
def test_empty_or_malformed_prior_file_is_an_error_naming_it(tmp_path, content, message):
    path = tmp_path / "TrainPrior.json"
    path.write_text(content)
    with pytest.raises(PriorFileError, match=re.escape(message)) as error:
        read_prior_file(path)
    assert str(path) in str(error.value)
    with pytest.raises(PriorFileError, match="no objects"):  # never write STKET's silent `{}`
        write_prior_file(tmp_path / "empty.json", count_priors([]))
    assert not (tmp_path / "empty.json").exists()


def stket_args(*flags, mode="predcls"):
    parser = train_parser()
    detections = ["-detections", "unused.pt"] if mode == "sgdet" else []
    return validate(parser.parse_args(["-model", "stket", "-mode", mode, *TINY_STKET, *detections, *flags]), parser)


def stket(*flags, mode="predcls", train_set=None, seed=0):
    torch.manual_seed(seed)
    return build_model(stket_args(*flags, mode=mode), 32, 8, None, train_set)


@pytest.fixture
def prior_file(tmp_path):
    path = tmp_path / "prior.json"
    write_prior_file(path, count_priors(hand_built_videos()))
    return str(path)


def entry():
    torch.manual_seed(1)
    e = tiny_entry(feature_dim=32, union_channels=8)
    e["labels"][e["pair_idx"][:, 1]] = torch.tensor([BOOK, CHAIR, BOOK, BOOK, CHAIR, 4, BOOK, CHAIR])
    return e


@pytest.mark.parametrize("mode", ["predcls", "sgcls", "sgdet"])
def test_forward_backward_in_each_mode(mode, prior_file):
    model = stket(*ALL_PRIORS, "-prior_path", prior_file, "-pred_contact_threshold", "0.0", mode=mode)
    e = entry()
    out = model(e)
    assert out["attention_distribution"].shape == (8, 3) and out["contacting_distribution"].shape == (8, 17)
    assert out["rel_features"].shape == (8, 3 * 16 + 2 * 8)
    for prefix in ("", "encoder_", "decoder_", "spatial_prior_", "temporal_prior_"):
        probs = out[f"{prefix}spatial_distribution"]
        assert probs.shape == (8, 6) and 0 <= probs.min() and probs.max() <= 1
    losses = model.compute_losses(out, e, bce=False)
    expected = {f"{b}_{c}" for b in ("encoder", "decoder", "ensemble", "spatial_prior", "temporal_prior")
                for c in ("attention", "spatial", "contacting")}
    assert set(losses) == expected | ({"object"} if mode != "predcls" else set())
    sum(losses.values()).backward()
    # DDP needs a gradient for every trainable parameter; the prior rows of the video's object classes learn.
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    present = torch.zeros(37, dtype=torch.bool)
    present[out.get("pred_labels", e["labels"])[e["pair_idx"][:, 1]]] = True
    for table in (model.temporal_prior.specific, model.spatial_prior.initial):
        grad_per_class = table.grad.flatten(1).abs().sum(1)
        assert (grad_per_class[present] > 0).all() and (grad_per_class[~present] == 0).all()
    model.eval()
    torch.testing.assert_close(model(e)["spatial_distribution"], model(e)["spatial_distribution"])


@pytest.mark.parametrize("pairs_per_frame", [(0, 2, 0, 0, 3, 1), (3,)])
def test_frames_without_pairs_and_one_frame_videos(pairs_per_frame, prior_file):
    """SGDET can leave frames without pairs (empty windows are skipped); a one-frame video has one window."""
    model = stket(*ALL_PRIORS, "-prior_path", prior_file, "-pred_contact_threshold", "0.1", mode="sgdet")
    e = tiny_entry(pairs_per_frame, feature_dim=32, union_channels=8)
    losses = model.compute_losses(model(e), e, bce=True)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    out = model.eval()(e)
    assert out["contacting_distribution"].shape == (sum(pairs_per_frame), 17)
    assert torch.isfinite(out["rel_features"]).all()


def test_object_history_and_previous_states():
    # Pairs: class 5 at frames 0, 1, 2, 5, 6 (scores .3 and .9 at frame 2), class 8 at frames 0 and 2.
    classes, frames = [5, 8, 5, 5, 5, 8, 5, 5], [0, 0, 1, 2, 2, 2, 5, 6]
    scores = [1, 1, 1, .3, .9, 1, 1, 1]
    now, previous, sequence, pad = object_history(classes, frames, scores, window_size=3)
    assert now.tolist() == [0, 1, 2, 4, 4, 5, 6, 7]  # the higher-scoring class-5 box holds frame 2's state
    assert previous.tolist() == [0, 1, 0, 2, 2, 1, 6, 6]  # frame 5 is 3 after frame 2: its own state
    chains = [row[~p].tolist() for row, p in zip(sequence, pad)]
    assert chains == [[0], [1], [0, 2], [0, 2, 3], [0, 2, 4], [1, 5], [6], [6, 7]]
    _, _, short, _ = object_history(classes, frames, scores, window_size=2)
    assert short.shape[1] == 2 and short[3].tolist() == [2, 3]


def test_flags_shape_the_model(prior_file):
    base = stket()
    assert len(base.encoder) == 2 and len(base.decoder) == 2 and len(base.ensemble) == 2  # script defaults
    assert base.spatial_prior is None and base.temporal_prior is None
    assert len(stket("-enc_layer_num", "3").encoder) == 3 and len(stket("-dec_layer_num", "1").decoder) == 1
    assert stket("-window_size", "3").slot_embedding.num_embeddings == 3
    assert stket("-window", "3").frame_embedding.num_embeddings == 3  # STTran's temporal window
    assert stket("-num_heads", "2").encoder[0].attention.num_heads == 2
    assert stket("-hidden_dim", "24").decoder[0].ffn[0].out_features == 24
    calls = []
    for layers in ("1", "2"):
        model = stket("-N_layer", layers).eval()
        hook = model.encoder[0].register_forward_hook(lambda *_, n=layers: calls.append(n))
        model(entry())
        hook.remove()
    assert calls.count("1") == 1 and calls.count("2") == 2
    files = read_prior_file(prior_file)
    spatial = stket("-use_spatial_prior", "-prior_path", prior_file)
    torch.testing.assert_close(spatial.spatial_prior.initial.data, files["initial"])
    assert spatial.temporal_prior is None and spatial.spatial_prior.mlp[-1].out_features == 3 * 16 + 2 * 8
    temporal = stket("-use_temporal_prior", "True", "-prior_path", prior_file)
    torch.testing.assert_close(temporal.temporal_prior.specific.data, files["specific"])
    assert temporal.spatial_prior is None


def test_priors_reach_queries_and_keys_and_the_threshold_selects_them(prior_file):
    e = entry()
    model = stket("-use_spatial_prior", "-use_temporal_prior", "-pred_contact_threshold", "0.0", "-prior_path",
                  prior_file).eval()
    before = model(e)
    with torch.no_grad():
        model.spatial_prior.initial[CHAIR] += 1.0
    after = model(e)
    assert not torch.allclose(after["encoder_spatial_distribution"], before["encoder_spatial_distribution"])
    with torch.no_grad():
        model.temporal_prior.specific[BOOK] += 1.0
    assert not torch.allclose(model(e)["decoder_spatial_distribution"], after["decoder_spatial_distribution"])
    # The previous frame's contacts at or above the threshold select specific priors; none pass 0.999 here.
    outputs = {}
    for threshold in ("0.0", "0.999"):
        model = stket("-use_temporal_prior", "-temporal_prior_loss", "-pred_contact_threshold", threshold,
                      "-prior_path", prior_file).eval()
        probs = model(e)["encoder_contacting_distribution"]
        states = model.contact_states(probs, e)
        argmax_nc = probs.argmax(1) == 8
        assert states[argmax_nc].sum(1).eq(1).all() and states[argmax_nc, 8].all()
        assert states[~argmax_nc].sum(1).eq(16 if threshold == "0.0" else 0).all()
        outputs[threshold] = model(e)["temporal_prior_spatial_distribution"]
    assert not torch.allclose(outputs["0.0"], outputs["0.999"])


def test_threshold_one_reads_gt_contacts_in_training_only(prior_file):
    e = entry()
    model = stket("-use_temporal_prior", "-pred_contact_threshold", "1.0", "-prior_path", prior_file)
    probs = torch.rand(8, 17)
    assert torch.equal(model.train().contact_states(probs, e), e["contacting_gt"] > 0.5)
    assert not model.eval().contact_states(probs, e)[probs.argmax(1) != 8].any()  # evaluation never sees labels


def test_loss_flags_change_the_training_loss(prior_file):
    e = entry()
    plain = stket().compute_losses(stket()(e), e, bce=True)
    categories = ("attention", "spatial", "contacting")
    assert set(plain) == {f"{b}_{c}" for b in ("encoder", "decoder", "ensemble") for c in categories}
    for use, loss in (("-use_spatial_prior", "-spatial_prior_loss"), ("-use_temporal_prior", "-temporal_prior_loss")):
        without = stket(use, "-prior_path", prior_file)
        with_loss = stket(use, loss, "-prior_path", prior_file)
        assert set(without.compute_losses(without(e), e, True)) == set(plain)
        added = set(with_loss.compute_losses(with_loss(e), e, True)) - set(plain)
        assert added == {f"{loss[1:-5]}_{c}" for c in categories}


def test_flags_that_do_not_apply_are_errors(capsys, prior_file):
    for flags, message in ((["-spatial_prior_loss"], "-spatial_prior_loss needs -use_spatial_prior"),
                           (["-temporal_prior_loss"], "-temporal_prior_loss needs -use_temporal_prior"),
                           (["-prior_path", prior_file], "-prior_path applies with"),
                           (["-use_spatial_prior", "-pred_contact_threshold", "0.5", "-prior_path", prior_file],
                            "needs -use_temporal_prior"),
                           (["-use_temporal_prior", "-pred_contact_threshold", "1.5", "-prior_path", prior_file],
                            "must be in")):
        with pytest.raises(SystemExit):
            stket(*flags)
        assert message in capsys.readouterr().err
    parser = train_parser()
    with pytest.raises(SystemExit):
        validate(parser.parse_args(["-model", "stket", "-spatial_layer", "2"]), parser)
    assert "use -enc_layer_num" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        validate(parser.parse_args(["-model", "sttran", "-window_size", "4"]), parser)
    assert "only apply to -model stket" in capsys.readouterr().err


def test_missing_prior_file_is_computed_logged_written_and_reused(synth_root, tmp_path, caplog):
    path = tmp_path / "priors" / "TrainPrior.json"
    flags = ("-use_temporal_prior", "-data_path", str(synth_root), "-prior_path", str(path))
    with caplog.at_level(logging.INFO, logger="vidsgg.models.priors"):
        model = stket(*flags)  # no train_set given: the annotations are read from -data_path
    assert path.is_file() and "was missing; computed from" in caplog.text
    train_set = ActionGenome(synth_root, "train")
    counts = count_priors(train_set[i]["gt_annotation"] for i in range(len(train_set)))
    torch.testing.assert_close(model.temporal_prior.specific.data, counts["specific"].float())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vidsgg.models.priors"):
        again = stket(*flags, train_set=train_set)
    assert "was missing" not in caplog.text and f"priors from {path}" in caplog.text
    torch.testing.assert_close(again.temporal_prior.initial.data, model.temporal_prior.initial.data)
    path.write_text("{}")  # STKET's countPrior.py output with wrong paths
    with pytest.raises(PriorFileError, match="holds no object classes"):
        stket(*flags)


def test_checkpoint_round_trip(prior_file):
    model = stket(*ALL_PRIORS, "-prior_path", prior_file, "-window_size", "3").eval()
    with torch.no_grad():
        model.temporal_prior.specific[BOOK, HOLDING] += 0.5  # learned values come back from the state dict
    rebuilt = STKET.from_config(model.config_dict())
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    e = entry()
    for key in ("attention_distribution", "contacting_distribution", "temporal_prior_spatial_distribution"):
        torch.testing.assert_close(rebuilt(e)[key], model(e)[key])


def test_compute_priors_script_both_ways(synth_root, tmp_path, capsys):
    script = Path(vidsgg.__file__).parent / "scripts" / "compute_priors.py"
    for name, command in (("a.json", [str(script)]), ("b.json", ["-m", "vidsgg.scripts.compute_priors"])):
        result = subprocess.run([sys.executable, *command, "-data_path", str(synth_root), "-out", str(tmp_path / name)],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    train_set = ActionGenome(synth_root, "train")
    counts = count_priors(train_set[i]["gt_annotation"] for i in range(len(train_set)))
    torch.testing.assert_close(read_prior_file(tmp_path / "a.json")["initial"], counts["initial"].float())
    with pytest.raises(SystemExit) as error:  # in-process: a clean usage error naming the folder
        compute_priors.main(["-data_path", str(tmp_path / "nowhere")])
    assert error.value.code == 2 and "nowhere" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()


def test_paper_size_parameter_count():
    settings = ["-model", "stket", "-mode", "predcls", "-enc_layer_num", "2", "-dec_layer_num", "2", "-N_layer", "1",
                "-window_size", "4", "-pred_contact_threshold", "0.8", "-bce_loss", *ALL_PRIORS]
    total = summary.main(settings)
    d, ffn = 1936, 2048
    attention = 3 * (d * d + d) + 4 * d * d + 4 * d  # W_q/W_k/W_v + in/out projections
    decoder_layer = attention + 2 * d * ffn + ffn + d + 2 * d  # one LayerNorm
    encoder_layer = decoder_layer + 2 * d
    mlp = 26 * 128 + 128 + 128 * 256 + 256 + 256 * 512 + 512 + 512 * d + d
    priors = (37 * 26 + mlp) + (37 * 26 + 37 * 17 * 26 + mlp)
    heads = 3 * (d * 26 + 26)
    embeddings = 2 * d + 4 * d  # frame (-window 2) and ensemble slot (-window_size 4)
    pair_features = 2 * (2048 * 512 + 512) + (1024 * 256 + 256) + (2 * 128 * 49 + 128) + 2 * 128 \
        + (128 * 256 * 9 + 256) + 2 * 256 + (256 * 49 * 512 + 512) + 2 * 37 * 200
    assert total == pair_features + 2 * encoder_layer + 4 * decoder_layer + priors + heads + embeddings == 216745828


def test_training_beats_random_weights(train_data, tmp_path):
    flags = ["-model", "stket", *ALL_PRIORS, "-enc_layer_num", "1", "-dec_layer_num", "1",
             "-prior_path", str(tmp_path / "TrainPrior.json")]
    common = ["-data_path", str(train_data), "-cache_dir", str(train_data / "cache"), *TINY_STKET]
    train.main(common + flags + ["-save_path", str(tmp_path / "run"), "-epochs", "6", "-lr", "4e-3", "-eval_freq", "6",
                                 "-scheduler", "cosine", "-seed", "1", "-bce_loss"])
    trained = test_script.main(common + ["-model_path", str(tmp_path / "run" / "checkpoint_final.tar")])
    random = test_script.main(common + [*flags, "-random_init", "True", "-seed", "1", "-output",
                                        str(tmp_path / "rand")])
    assert trained["test/with/R@20"] > random["test/with/R@20"] + 0.2, (trained, random)
    # The script's test setting: the checkpoint's own flags (here -use_temporal_prior) make the threshold valid.
    at_one = test_script.main(common + ["-model_path", str(tmp_path / "run" / "checkpoint_final.tar"),
                                        "-pred_contact_threshold", "1.0", "-output", str(tmp_path / "t1")])
    assert 0 < at_one["test/with/R@20"] <= 1
