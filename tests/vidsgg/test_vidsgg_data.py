"""Action Genome loader: filtering counts, class-name fixes, errors naming file and key, datasize, synth."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from vidsgg.data.action_genome import ActionGenome, AnnotationError
from vidsgg.data.classes import RAW_OBJECTS, RAW_PREDICATES
from vidsgg.data.entries import build_entry


def _obj(cls, split, visible=True, bbox=(10, 10, 20, 30), att=("looking_at",), spa=("in_front_of",),
         con=("not_contacting",)):
    return {"class": cls, "bbox": bbox if visible else None, "visible": visible,
            "attention_relationship": list(att), "spatial_relationship": list(spa),
            "contacting_relationship": list(con), "metadata": {"tag": "x", "set": split}}


def write_ag(root, person, objects):
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "object_classes.txt").write_text("\n".join(RAW_OBJECTS))
    (root / "annotations" / "relationship_classes.txt").write_text("\n".join(RAW_PREDICATES))
    with open(root / "annotations" / "person_bbox.pkl", "wb") as f:
        pickle.dump(person, f)
    with open(root / "annotations" / "object_bbox_and_relationship.pkl", "wb") as f:
        pickle.dump(objects, f)


def hand_built(root):
    """A: 3 frames, one without a person box -> 2 frames -> video dropped.
    B: 5 frames, one with only invisible objects -> 4 frames kept. C: test split, 3 frames."""
    person, objects = {}, {}
    box = {"bbox": np.array([[0, 0, 50, 80]], np.float32), "bbox_size": (320, 240)}
    none = {"bbox": np.zeros((0, 4), np.float32), "bbox_size": (320, 240)}
    for i in range(3):
        key = f"A.mp4/{i:06d}.png"
        person[key] = dict(none if i == 1 else box)
        objects[key] = [_obj("cup/glass/bottle", "train")]
    for i in range(5):
        key = f"B.mp4/{i:06d}.png"
        person[key] = dict(box)
        objects[key] = [_obj("sofa/couch", "train", visible=(i != 2)), _obj("chair", "train", visible=(i not in (2, 4)))]
    for i in range(3):
        key = f"C.mp4/{i:06d}.png"
        person[key] = dict(box)
        objects[key] = [_obj("phone/camera", "test", att=("not_looking_at",), spa=("on_the_side_of", "behind"),
                             con=("writing_on",))]
    write_ag(root, person, objects)
    return person, objects


def test_filtering_counts_and_class_fixes(tmp_path):
    hand_built(tmp_path)
    train = ActionGenome(tmp_path, "train")
    assert [v["video"] for v in train.videos] == ["B.mp4"]
    assert len(train[0]["frame_keys"]) == 4 and train.stats["videos_too_short"] == 1
    assert train.stats["frames_no_person"] == 1
    frame4 = train[0]["gt_annotation"][3]  # B frame 4: only the sofa is visible
    assert len(frame4) == 2 and frame4[1]["class"] == train.classes.objects.index("sofa/couch") == 31
    np.testing.assert_allclose(frame4[1]["bbox"], [10, 10, 30, 40])  # xywh -> xyxy
    test = ActionGenome(tmp_path, "test")
    obj = test[0]["gt_annotation"][0][1]
    assert obj["class"] == 24 and test.classes.objects[24] == "phone/camera"
    assert obj["attention_relationship"].tolist() == [1]
    assert obj["spatial_relationship"].tolist() == [4, 3]  # on_the_side_of, behind (category-local)
    assert obj["contacting_relationship"].tolist() == [16]  # writing_on
    assert test.classes.predicates[0] == "looking_at" and test.classes.contacting[-1] == "writing_on"
    assert len(test.classes.objects) == 37 and test.classes.objects[9] == "closet/cabinet"


def test_filtersmall_used_for_sgcls_only(tmp_path):
    person, objects = hand_built(tmp_path)
    small = {k: [o for o in v if o["class"] != "chair"] for k, v in objects.items()}
    with open(tmp_path / "annotations" / "object_bbox_and_relationship_filtersmall.pkl", "wb") as f:
        pickle.dump(small, f)
    assert ActionGenome(tmp_path, "train", mode="predcls").object_file.name == "object_bbox_and_relationship.pkl"
    sgcls = ActionGenome(tmp_path, "train", mode="sgcls")
    assert sgcls.object_file.name.endswith("filtersmall.pkl")
    assert all(len(frame) == 2 for frame in sgcls[0]["gt_annotation"][:3])  # chair removed


@pytest.mark.parametrize("breakage, message", [
    (lambda p, o: p["B.mp4/000000.png"].pop("bbox"), "'B.mp4/000000.png' has no 'bbox'"),
    (lambda p, o: o["B.mp4/000001.png"][0].update(bbox=None), "visible but has no bbox"),
    (lambda p, o: o["B.mp4/000001.png"][0].update(**{"class": "unicorn"}), "unknown class"),
    (lambda p, o: o["B.mp4/000001.png"][0].update(spatial_relationship=["inside_of"]), "inside_of"),
    (lambda p, o: o.pop("B.mp4/000003.png"), "'B.mp4/000003.png' (present in"),
    (lambda p, o: o["B.mp4/000001.png"][0].pop("metadata"), "without ['metadata']"),
    (lambda p, o: o["B.mp4/000001.png"][0].update(bbox=(10, 10, 20)), "'bbox' must have 4 numbers, found 3"),
    (lambda p, o: o["B.mp4/000001.png"][0].update(bbox=(10, 10, -5, 30)), "negative width or height"),
    (lambda p, o: o["B.mp4/000001.png"][0].update(bbox=(10, float("nan"), 5, 30)), "NaN or inf"),
    (lambda p, o: o["B.mp4/000001.png"][0].update(bbox=(10, 10, float("inf"), 30)), "NaN or inf"),
    (lambda p, o: p["B.mp4/000001.png"].update(bbox=np.array([[0, np.nan, 50, 80]])), "NaN or inf"),
    (lambda p, o: p["B.mp4/000001.png"].update(bbox=np.array([[60, 0, 50, 80]])), "x2 < x1"),
    (lambda p, o: o["B.mp4/000001.png"][0].update(attention_relationship=[]), "'attention_relationship' is empty"),
])
def test_broken_pickles_name_file_and_key(tmp_path, breakage, message):
    person, objects = hand_built(tmp_path)
    breakage(person, objects)
    write_ag(tmp_path, person, objects)
    with pytest.raises(AnnotationError, match="pkl") as info:
        ActionGenome(tmp_path, "train")
    assert message in str(info.value)


@pytest.mark.parametrize("key", ["../../outside.mp4/000000.png", "/etc/video.mp4/000000.png"])
def test_frame_keys_outside_the_data_folder_are_refused_unless_allowed(tmp_path, key):
    person, objects = hand_built(tmp_path)
    for i in range(3):
        person[key[:-10] + f"{i:06d}.png"], objects[key[:-10] + f"{i:06d}.png"] = person["B.mp4/000000.png"], \
            objects["B.mp4/000000.png"]
    write_ag(tmp_path, person, objects)
    with pytest.raises(AnnotationError, match="points outside the data folder.*-allow_outside_data") as info:
        ActionGenome(tmp_path, "train")
    assert "person_bbox.pkl" in str(info.value) and key[:-10] in str(info.value)
    allowed = ActionGenome(tmp_path, "train", allow_outside_data=True)
    outside = [allowed[i] for i in range(len(allowed)) if allowed[i]["video"] == key.rsplit("/", 1)[0]]
    assert len(outside) == 1 and outside[0]["frame_paths"][0] == str(tmp_path / "frames" / key)


def test_a_frame_of_another_size_than_bbox_size_names_frame_and_key(synth_root, tmp_path):
    import shutil
    import cv2
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    dataset = ActionGenome(root, "train")
    video = dataset.videos[1]
    frame = root / "frames" / video["frame_keys"][2]
    cv2.imwrite(str(frame), np.zeros((10, 12, 3), np.uint8))
    dataset[0]  # other videos are unaffected
    with pytest.raises(AnnotationError, match="12x10 px") as info:
        dataset[1]
    assert str(frame) in str(info.value) and repr(video["frame_keys"][0]) in str(info.value)
    assert "person_bbox.pkl" in str(info.value)


def test_missing_and_corrupt_files(tmp_path):
    hand_built(tmp_path)
    (tmp_path / "annotations" / "person_bbox.pkl").write_bytes(b"not a pickle")
    with pytest.raises(AnnotationError, match="person_bbox.pkl"):
        ActionGenome(tmp_path, "train")
    (tmp_path / "annotations" / "person_bbox.pkl").unlink()
    with pytest.raises(AnnotationError, match="not found.*person_bbox.pkl"):
        ActionGenome(tmp_path, "train")
    with pytest.raises(AnnotationError, match="Annotation folder not found"):
        ActionGenome(tmp_path / "nowhere", "train")


def test_datasize_mini_and_small(synth_root):
    large = ActionGenome(synth_root, "train", datasize="large")
    small = ActionGenome(synth_root, "train", datasize="small", small_videos=5)
    assert len(large) > 5
    assert len(small) <= 5 and {v["video"] for v in small.videos} <= {v["video"] for v in large.videos}
    mini = ActionGenome(synth_root, "train", datasize="mini", mini_frames=20)
    assert sum(len(v["frame_keys"]) for v in mini.videos) <= 20 < large.stats["frames_kept"]
    with pytest.raises(ValueError, match="datasize"):
        ActionGenome(synth_root, "train", datasize="huge")


def test_synth_layout_and_filtering(synth_root):
    with open(synth_root / "annotations" / "person_bbox.pkl", "rb") as f:
        person = pickle.load(f)
    with open(synth_root / "annotations" / "object_bbox_and_relationship.pkl", "rb") as f:
        objects = pickle.load(f)
    assert set(person) == set(objects)
    for key in person:
        assert (synth_root / "frames" / key).is_file()
    # Recount what the filtering rules must keep, independently of the loader.
    expected_frames = 0
    videos = {}
    for key in person:
        if objects[key][0]["metadata"]["set"] == "train" and any(o["visible"] for o in objects[key]) \
                and len(person[key]["bbox"]):
            videos.setdefault(key.split("/")[0], []).append(key)
    expected_frames = sum(len(v) for v in videos.values() if len(v) > 2)
    train = ActionGenome(synth_root, "train")
    assert train.stats["frames_kept"] == expected_frames
    assert len(train) == sum(len(v) > 2 for v in videos.values())
    assert train.stats["frames_no_person"] > 0 and train.stats["videos_too_short"] > 0


def test_build_entry_pairs_and_targets(tmp_path):
    hand_built(tmp_path)
    sample = ActionGenome(tmp_path, "test")[0]
    entry = build_entry(sample["gt_annotation"], "predcls")
    assert entry["boxes"].shape == (6, 5) and entry["pair_idx"].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert entry["im_idx"].tolist() == [0, 1, 2] and entry["labels"].tolist() == [1, 24] * 3
    assert entry["attention_gt"].tolist() == [1, 1, 1]
    assert entry["spatial_gt"][0].tolist() == [0, 0, 0, 1, 1, 0]
    assert entry["contacting_gt"][0, 16] == 1 and entry["contacting_gt"][0].sum() == 1


def test_build_entry_sgdet_matches_detections(tmp_path):
    hand_built(tmp_path)
    gt = ActionGenome(tmp_path, "test")[0]["gt_annotation"]
    det = {"boxes": torch.tensor([[0, 0, 50, 80], [11, 11, 30, 40], [200, 200, 230, 230]], dtype=torch.float32),
           "labels": torch.tensor([1, 5, 7]), "scores": torch.tensor([0.9, 0.8, 0.7])}
    train_entry = build_entry(gt, "sgdet", [det] * 3, training=True)
    # The matched detection takes the GT class (24); the far box is dropped; nothing missed, nothing added.
    assert train_entry["labels"].tolist() == [1, 24] * 3 and train_entry["has_gt"].all()
    test_entry = build_entry(gt, "sgdet", [det] * 3, training=False)
    assert len(test_entry["pair_idx"]) == 6 and not test_entry["has_gt"].any()
    miss = {"boxes": det["boxes"][:1], "labels": det["labels"][:1], "scores": det["scores"][:1]}
    supplemented = build_entry(gt, "sgdet", [miss] * 3, training=True)
    assert supplemented["labels"].tolist() == [1, 24] * 3 and supplemented["scores"][1] == 1.0
