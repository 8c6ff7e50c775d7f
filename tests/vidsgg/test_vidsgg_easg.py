"""EASG: the loader on the synthetic layout (counts, classes, reading rules, errors naming the file or key), the
reference recall@K on hand-built graphs, forward/backward in the three modes, and AG weights loading by name."""
import json
import re

import pytest
import torch

from vidsgg.checkpointing import load_compatible
from vidsgg.easg import synth
from vidsgg.easg.dataset import ANNOTATION_FILE, EASG, FEATURES_FILE, OBJECTS_FILE, EASGAnnotationError
from vidsgg.easg.entries import CAMERA_WEARER_LABEL, build_easg_entry
from vidsgg.easg.evaluation import EASGEvaluator, ranked_triplets
from vidsgg.easg.model import EASGConfig, EASGSTTran
from vidsgg.models.sttran import STTran, STTranConfig
from vidsgg import test as test_script
from vidsgg.models.build import build_model, word_table
from vidsgg.option_checks import parse_train_args

from tests.vidsgg.test_vidsgg_train import TINY, run

TINY_DIMS = dict(feature_dim=32, union_channels=8, proj_dim=16, embed_dim=8, union_dim=16, heads=4, ffn_dim=32,
                 temporal_layers=1, bn_momentum=0.1)


@pytest.fixture(scope="module")
def easg_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("easg_synth")
    synth.write_dataset(root, clips=8, seed=5)
    return root


def test_loader_reads_the_synthetic_layout(easg_root):
    annotations = json.loads((easg_root / ANNOTATION_FILE).read_text())
    train, test = EASG(easg_root, "train"), EASG(easg_root, "test")
    assert len(train) == 6 and len(test) == 2  # one item per clip; 'test' reads the JSON's val clips
    assert train.classes.objects == synth.OBJECTS and set(train.classes.edges) <= set(synth.EDGES)
    first_verb = next(t[2] for c in annotations.values() for g in c["graphs"] for t in g["triplets"] if t[0] == "CW")
    assert train.classes.verbs[0] == first_verb  # verbs in order of first appearance
    clip_id = next(c for c in annotations if annotations[c]["split"] == "train")
    sample = train[0]
    graphs = annotations[clip_id]["graphs"]
    assert sample["video"] == clip_id and len(sample["graphs"]) == len(graphs)
    assert sample["verb_features"].shape == (len(graphs), synth.VERB_DIM)
    assert len(sample["frame_paths"]) == sum(len(g["groundings"]) for g in graphs) == len(sample["gt_grounding"])
    assert all(p.endswith(".jpg") for p in sample["frame_paths"])
    assert sample["frame_names"][0] == f"{graphs[0]['graph_uid']}/{clip_id}_pre.jpg"
    assert sample["image_size"] == (64.0, 48.0)
    objects, edges, verbs = train.classes.objects, train.classes.edges, train.classes.verbs
    for g, graph in enumerate(graphs):
        verb = next(t[2] for t in graph["triplets"] if t[0] == "CW")
        for frame in sample["graphs"][g]["frames"]:
            assert sample["frame_graph"][frame] == g
            names = {objects[o["obj"]] for o in sample["gt_grounding"][frame]}
            assert synth.DISTRACTOR not in names and "spoon" not in names  # no edge / unknown object: ignored
            for obj in sample["gt_grounding"][frame]:
                name, obj_edges = objects[obj["obj"]], {edges[e] for e in obj["edge"]}
                assert obj["verb"] == verbs.index(verb)
                if name in synth.HANDS:
                    assert obj_edges == ({"with", "in"} if verb in ("put", "place") else {"with"})
                elif name in synth.SURFACES:
                    assert obj_edges == {synth.surface_edge(verb)}
                else:
                    assert obj_edges == {"dobj"}  # the ":1" instance suffix is dropped
    box = sample["gt_grounding"][0][0]["bbox"]
    assert box.dtype.name == "float32" and (box[2:] > box[:2]).all()


def test_long_clips_are_split_into_items_with_unique_ids(easg_root):
    whole, pieces = EASG(easg_root, "train"), EASG(easg_root, "train", max_item_frames=4)
    assert len(pieces) > len(whole)
    assert len({s["video"] for s in pieces}) == len(pieces)
    assert sum(len(s["frame_paths"]) for s in pieces) == sum(len(s["frame_paths"]) for s in whole)
    assert any(s["video"].endswith("_part1") for s in pieces)


def test_missing_files_and_keys_are_named(easg_root, tmp_path):
    with pytest.raises(EASGAnnotationError, match="objects.txt"):
        EASG(tmp_path, "train")
    root = tmp_path / "copy"
    synth.write_dataset(root, clips=2, seed=1)
    (root / FEATURES_FILE).unlink()
    with pytest.raises(EASGAnnotationError, match="features_verb.pt"):
        EASG(root, "train")
    synth.write_dataset(root, clips=2, seed=1)
    features = torch.load(root / FEATURES_FILE, weights_only=True)
    dropped = sorted(features)[0]
    torch.save({k: v for k, v in features.items() if k != dropped}, root / FEATURES_FILE)
    with pytest.raises(EASGAnnotationError, match=dropped):
        for split in ("train", "test"):  # the graph may be in either split
            EASG(root, split)
    annotations = json.loads((root / ANNOTATION_FILE).read_text())
    del next(iter(annotations.values()))["W"]
    (root / ANNOTATION_FILE).write_text(json.dumps(annotations))
    with pytest.raises(EASGAnnotationError, match=r"no \['W'\]"):
        EASG(root, "train")
    with pytest.raises(ValueError, match="split"):
        EASG(easg_root, "val")
    assert (easg_root / OBJECTS_FILE).is_file()


def test_graph_uids_that_leave_the_frames_folder_are_refused_unless_allowed(tmp_path):
    root = tmp_path / "easg"
    synth.write_dataset(root, clips=2, seed=1)
    annotations = json.loads((root / ANNOTATION_FILE).read_text())
    features = torch.load(root / FEATURES_FILE, weights_only=True)
    clip_id, clip = next((c, v) for c, v in annotations.items() if v["split"] == "train")
    old = clip["graphs"][0]["graph_uid"]
    clip["graphs"][0]["graph_uid"] = "../../elsewhere"
    features[f"../../elsewhere_{clip_id}"] = features[f"{old}_{clip_id}"]
    (root / ANNOTATION_FILE).write_text(json.dumps(annotations))
    torch.save(features, root / FEATURES_FILE)
    with pytest.raises(EASGAnnotationError, match="'../../elsewhere/.*points outside the data folder"):
        EASG(root, "train")
    allowed = EASG(root, "train", allow_outside_data=True)
    assert any(name.startswith("../../elsewhere/") for item in allowed.items for name in item["frame_names"])


# ------------------------------------------------------------------------------------------------ evaluation
def test_ranked_triplets_follow_the_reference_counts_and_order():
    objects = torch.tensor([3, 5])
    edges = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.7]])
    with_ = ranked_triplets("edgecls", "with", 2, objects, edges)
    assert with_.tolist() == [[2, 3, 0], [2, 5, 1]]  # top-1 edge per object, by score
    no = ranked_triplets("edgecls", "no", 2, objects, edges)  # ceil(50/2) = 25 edges per object: all 3
    assert no.tolist() == [[2, 3, 0], [2, 5, 1], [2, 5, 2], [2, 3, 2], [2, 5, 0], [2, 3, 1]]
    obj_scores = torch.tensor([[0.1, 0.0, 0.0, 0.6, 0.3, 0.0], [0.0, 0.2, 0.0, 0.0, 0.0, 0.7]])
    sg = ranked_triplets("sgcls", "with", 2, objects, edges, obj_scores)
    # ceil(50 / (1·2)) = 25 objects per slot -> all 6; score = object + edge
    assert len(sg) == 12 and sg[0].tolist() == [2, 3, 0] and sg[1].tolist() == [2, 5, 1]
    verbs = torch.tensor([0.05, 0.5, 0.1, 0.2, 0.05, 0.1])
    easg = ranked_triplets("easgcls", "no", 2, objects, edges, obj_scores, verbs)
    # 5 verbs × 2 slots × ceil(50/(5·5·2)) = 1 object × 3 edges (5 clamped to E = 3)
    assert len(easg) == 5 * 2 * 1 * 3
    assert easg[0].tolist() == [1, 3, 0]  # 0.5 + 0.6 + 0.9
    assert set(easg[:, 0].tolist()) == {1, 3, 2, 5, 0}  # the 5 best verbs (ties: first index)


def hand_sample():
    """One item with two graphs: graph 0 (verb 1) in frames 0-1 with objects 2 (edge 0) and 4 (edges 1, 2);
    graph 1 (verb 0) in frame 2 with object 2 (edge 2)."""
    def obj(o, edges, verb):
        return {"obj": o, "bbox": torch.tensor([1.0, 1.0, 9.0, 9.0]).numpy(), "verb": verb, "edge": edges}
    grounding = [[obj(2, [0], 1), obj(4, [1, 2], 1)], [obj(4, [1, 2], 1)], [obj(2, [2], 0)]]
    return {"gt_grounding": grounding, "frame_graph": torch.tensor([0, 0, 1]), "image_size": (10.0, 10.0),
            "graphs": [{"graph_uid": "a", "verb": 1, "frames": [0, 1]}, {"graph_uid": "b", "verb": 0, "frames": [2]}],
            "verb_features": torch.zeros(2, 4), "num_edges": 3}


def test_evaluator_on_hand_built_graphs():
    sample = hand_sample()
    entry = build_easg_entry(sample, 3)
    assert entry["pair_idx"].tolist() == [[0, 1], [0, 2], [3, 4], [5, 6]]
    assert entry["labels"][entry["is_person"]].eq(CAMERA_WEARER_LABEL).all()
    assert entry["graph_idx"].tolist() == [0, 0, 0, 1] and entry["edge_gt"][1].tolist() == [0, 1, 1]
    # Pairs: (g0, obj 2), (g0, obj 4, frame 0), (g0, obj 4, frame 1), (g1, obj 2).
    edges = torch.tensor([[0.9, 0.2, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9], [0.3, 0.4, 0.5]])
    evaluator = EASGEvaluator("edgecls", 3)
    evaluator.evaluate_video(sample, entry, {"edge_distribution": edges})
    result = evaluator.summary()
    # Graph 0, with: obj 2 -> edge 0 (hit); obj 4: mean over its two pairs [0.1, 0.5, 0.5] -> edge 1 (hit): 2/3.
    # Graph 1, with: edge 2 (hit): 1. Mean over graphs: (2/3 + 1) / 2.
    assert result["graphs"] == 2 and result["with/R@20"] == pytest.approx((2 / 3 + 1) / 2)
    assert result["no/R@20"] == pytest.approx(1.0)  # every edge of every slot is a candidate
    # Per edge class, pooled: edge 0 1/1, edge 1 1/1, edge 2 1/2 -> 5/6; per graph: edge 2 (0/1 + 1/1) / 2.
    assert result["with/mR@20/per_predicate"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert result["with/mR@20/per_frame"] == pytest.approx((0.5 + 0.5 + 0.5) / 3)
    assert result["with/mR@20"] == result["with/mR@20/per_predicate"]
    # SGCLS: box 4 (graph 0, object 4, frame 1) is predicted as class 3, so slot 4's mean object score ties 3 and 4.
    sg = EASGEvaluator("sgcls", 3, mean_recall="per_frame")
    logits = torch.full((7, 6), -5.0)
    logits[[1, 2, 4, 6], [2, 4, 3, 2]] = 5.0  # box 4 (graph 0, obj 4, frame 1) predicted as class 3
    sg.evaluate_video(sample, entry, {"edge_distribution": edges, "obj_logits": logits})
    out = sg.summary()
    # Graph 0 ranks (1,2,0) 1.9, then (1,3,1) and (1,4,1) at 1.0 (slot 4's edge mean [.1,.5,.5] -> edge 1): 2/3.
    assert out["with/R@10"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["with/mR@20"] == out["with/mR@20/per_frame"]


# ------------------------------------------------------------------------------------------------ model
def tiny_model(mode, **extra):
    torch.manual_seed(0)
    return EASGSTTran(EASGConfig(mode=mode, num_objects=len(synth.OBJECTS), num_verbs=len(synth.VERBS),
                                 num_edges=len(synth.EDGES), verb_dim=synth.VERB_DIM, verb_hidden=16,
                                 **TINY_DIMS, **extra))


def tiny_entry(dataset, index=0):
    torch.manual_seed(1)
    sample = dataset[index]
    entry = build_easg_entry(sample, sample["num_edges"])
    entry["features"] = torch.randn(len(entry["boxes"]), 32)
    entry["union_feat"] = torch.randn(len(entry["pair_idx"]), 8, 7, 7)
    entry["image_size"] = sample["image_size"]
    return sample, entry


@pytest.mark.parametrize("mode", ["easgcls", "sgcls", "edgecls"])
def test_forward_backward_in_the_three_modes(easg_root, mode):
    dataset = EASG(easg_root, "train", mode)
    model = tiny_model(mode)
    sample, entry = tiny_entry(dataset)
    out = model(entry)
    pairs, graphs = len(entry["pair_idx"]), len(sample["graphs"])
    assert out["edge_distribution"].shape == (pairs, len(synth.EDGES))
    assert ((out["edge_distribution"] > 0) & (out["edge_distribution"] < 1)).all()
    assert ("obj_logits" in out) == (mode != "edgecls") and ("verb_logits" in out) == (mode == "easgcls")
    if mode == "easgcls":
        assert out["verb_logits"].shape == (graphs, len(synth.VERBS))
    losses = model.compute_losses(out, entry, bce=False)
    expected = {"easgcls": {"edge", "object", "verb"}, "sgcls": {"edge", "object"}, "edgecls": {"edge"}}
    assert set(losses) == expected[mode]
    sum(losses.values()).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []  # DDP: every parameter is used
    bce = model.compute_losses(model(entry), entry, bce=True)["edge"]
    assert torch.isfinite(bce) and bce > 0
    model.eval()
    again = model(entry)
    assert torch.equal(again["edge_distribution"], model(entry)["edge_distribution"])
    evaluator = EASGEvaluator(mode, len(synth.EDGES))
    evaluator.evaluate_video(sample, entry, again)
    assert evaluator.summary()["graphs"] == graphs
    if mode != "easgcls":  # a model without the verb classifier cannot run in easgcls
        model.config.mode = "easgcls"
        with pytest.raises(ValueError, match="verb classifier"):
            model(entry)


def test_verb_terms_start_at_zero_and_ag_weights_load_by_name():
    model = tiny_model("sgcls")
    assert model.verb_fc.weight.abs().sum() == 0 and model.verb_word.weight.abs().sum() == 0
    ag = STTran(STTranConfig(mode="sgcls", **TINY_DIMS))
    loaded, skipped = load_compatible(model, ag.state_dict())
    assert "pair_features.subject_fc.weight" in loaded and "transformer.temporal.0.attention.in_proj_weight" in loaded
    assert "pair_features.subject_word.weight" in loaded and "object_classifier.box_mlp.0.weight" in loaded
    assert "pair_features.object_word.weight" in skipped and "attention_head.weight" in skipped
    assert torch.equal(model.transformer.frame_embedding.weight, ag.transformer.frame_embedding.weight)
    rebuilt = EASGSTTran.from_config(model.config_dict())
    rebuilt.load_state_dict(model.state_dict())


# ------------------------------------------------------------------------------------------------ end to end
def test_fine_tuning_from_an_action_genome_checkpoint_beats_random_weights(train_data, tmp_path):
    """AG PredCLS (short) -> EASG easgcls with -resume_from the AG checkpoint: compatible tensors load, training
    beats the random-weight R@20, and test.py reproduces the validation recall from the EASG checkpoint."""
    run(train_data, tmp_path / "ag", "-epochs", "1", "-lr", "1e-3", "-max_eval_videos", "1")
    easg = tmp_path / "easg"
    synth.write_dataset(easg, clips=12, seed=2)
    flags = ["-dataset", "easg", "-mode", "easgcls"]
    metrics = run(easg, tmp_path / "ft", *flags, "-epochs", "6", "-lr", "3e-3", "-scheduler", "cosine", "-seed", "1",
                  "-eval_freq", "6", "-resume_from", str(tmp_path / "ag" / "checkpoint_final.tar"))
    log = (tmp_path / "ft" / "logfile.txt").read_text()
    loaded = int(re.search(r"Progressive training: (\d+) tensors", log).group(1))
    assert loaded > 0 and "pair_features.object_word.weight" in log  # EASG-sized tables are skipped
    common = ["-data_path", str(easg), "-cache_dir", str(easg / "cache"), *TINY]
    random = test_script.main(common + [*flags, "-random_init", "True", "-seed", "1", "-output", str(tmp_path / "r")])
    checkpoint = str(tmp_path / "ft" / "checkpoint_final.tar")
    trained = test_script.main(common + ["-mode", "easgcls", "-model_path", checkpoint])
    assert trained["test/with/R@20"] == pytest.approx(metrics["val/with/R@20"])
    assert trained["test/with/R@20"] > random["test/with/R@20"] + 0.2, (trained, random)
    assert {"val/with/R@10", "val/with/R@50", "val/with/mR@20", "val/no/R@20"} <= set(metrics)


def test_build_from_flags_reads_class_counts_and_glove(easg_root, tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("knife " + " ".join(["0.5"] * 8) + "\nperson " + " ".join(["-1"] * 8) + "\n")
    args = parse_train_args(TINY + ["-dataset", "easg", "-mode", "sgcls", "-data_path", str(easg_root),
                                    "-word_vectors", f"glove:{glove}"])
    model = build_model(args, 32, 8, word_table(args))
    vocabulary = EASG(easg_root, "train").classes
    knife = vocabulary.objects.index("knife")
    assert model.config.num_objects == len(synth.OBJECTS) and model.config.num_edges == len(vocabulary.edges)
    assert model.config.num_verbs == len(vocabulary.verbs) and model.config.verb_dim == synth.VERB_DIM
    assert torch.all(model.pair_features.object_word.weight[knife] == 0.5)
    assert torch.all(model.object_classifier.word.weight[knife] == 0.5)
    assert torch.all(model.pair_features.subject_word.weight[CAMERA_WEARER_LABEL] == -1.0)  # AG "person"
    assert model.verb_classifier is None and model.edge_head.out_features == len(vocabulary.edges)
    with pytest.raises(EASGAnnotationError, match="objects.txt"):
        build_model(parse_train_args(TINY + ["-dataset", "easg", "-mode", "sgcls", "-data_path", str(tmp_path)]), 32, 8)
