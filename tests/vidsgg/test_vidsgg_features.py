"""Spatial masks, the frozen backbone, the feature cache (hits, stale detection, key by weights), GloVe."""
import numpy as np
import pytest
import torch
import torchvision

from vidsgg.data.action_genome import ActionGenome
from vidsgg.data.entries import build_entry
from vidsgg.features.backbone import IMAGENET_MEAN, IMAGENET_STD, FeatureExtractor
from vidsgg.features.cache import FeatureStore
from vidsgg.features.masks import spatial_masks
from vidsgg.features.word_vectors import load_glove, parse_word_vectors


def test_spatial_masks_soft_coverage():
    subject = torch.tensor([[0.0, 0.0, 27.0, 27.0]])
    obj = torch.tensor([[0.0, 0.0, 13.5, 27.0]])  # left half: column 13 is half covered
    masks = spatial_masks(subject, obj)
    assert masks.shape == (1, 2, 27, 27)
    assert torch.allclose(masks[0, 0], torch.full((27, 27), 0.5))  # full coverage minus 0.5
    assert torch.allclose(masks[0, 1, :, :13], torch.full((27, 13), 0.5))
    assert torch.allclose(masks[0, 1, :, 13], torch.zeros(27))      # 0.5 coverage - 0.5
    assert torch.allclose(masks[0, 1, :, 14:], torch.full((27, 13), -0.5))


def test_spatial_masks_union_frame_and_scale_invariance():
    subject = torch.tensor([[10.0, 10.0, 20.0, 40.0]])
    obj = torch.tensor([[30.0, 20.0, 50.0, 30.0]])
    masks = spatial_masks(subject, obj)
    # Union is 40 wide, 30 high; subject covers x in [0, 6.75) cells, y in [0, 27) -> mass 6.75·27.
    assert (masks[0, 0] + 0.5).sum().item() == pytest.approx(6.75 * 27, rel=1e-5)
    assert (masks[0, 1] + 0.5).sum().item() == pytest.approx(13.5 * 9, rel=1e-5)
    assert torch.allclose(spatial_masks(subject * 3, obj * 3), masks, atol=1e-5)


def test_backbone_shapes_and_frozen():
    extractor = FeatureExtractor(18, image_size=64, max_size=96)
    images, scale = extractor.prepare([np.zeros((72, 96, 3), np.uint8)] * 2)
    assert images.shape == (2, 3, 64, 85) and scale == pytest.approx(64 / 72)
    boxes = torch.tensor([[0.0, 0, 30, 30], [10, 10, 60, 50], [5, 5, 20, 20]])
    obj, union = extractor(images, boxes, torch.tensor([0, 0, 1]), torch.tensor([[0, 1]]))
    assert obj.shape == (3, 512) and union.shape == (1, 256, 7, 7)
    assert not any(p.requires_grad for p in extractor.parameters())
    extractor.train()
    assert not extractor.base[1].training  # BatchNorm stays frozen


def test_backbone_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        FeatureExtractor(18, weights=tmp_path / "nope.pth")
    other = FeatureExtractor(18, seed=5)
    torch.manual_seed(5)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    loaded = FeatureExtractor(18, weights=tmp_path / "r18.pth")
    assert loaded.digest() == other.digest() != FeatureExtractor(18, seed=0).digest()


def test_feature_cache_hits_stale_and_key(tmp_path, synth_root):
    sample = ActionGenome(synth_root, "train")[0]
    entry = build_entry(sample["gt_annotation"], "predcls")
    extractor = FeatureExtractor(18, image_size=48, max_size=64)
    store = FeatureStore(extractor, tmp_path / "cache")
    fresh_obj, fresh_union = store.compute(sample["frame_paths"], entry)
    first = store.get(sample, entry)
    second = store.get(sample, entry)
    assert (store.misses, store.hits) == (1, 1)
    torch.testing.assert_close(second[0], first[0])
    torch.testing.assert_close(second[0], fresh_obj, rtol=2e-3, atol=2e-3)  # float16 on disk
    torch.testing.assert_close(second[1], fresh_union, rtol=2e-3, atol=2e-3)
    moved = dict(entry, boxes=entry["boxes"] + torch.tensor([0.0, 1, 1, 1, 1]))
    store.get(sample, moved)
    assert store.stale == 1 and store.misses == 2
    other = FeatureStore(FeatureExtractor(18, image_size=48, max_size=64, seed=1), tmp_path / "cache")
    assert other.folder != store.folder  # other weights: another key, never the old files
    assert (store.folder / "manifest.json").is_file()


def test_feature_cache_keeps_values_beyond_float16_range(tmp_path, synth_root, caplog):
    """Random-init deep backbones give features above 65504: cached as float16 they would turn into inf."""
    sample = ActionGenome(synth_root, "train")[0]
    entry = build_entry(sample["gt_annotation"], "predcls")
    store = FeatureStore(FeatureExtractor(18, image_size=48, max_size=64), tmp_path / "cache")
    computed = store.compute(sample["frame_paths"], entry)
    huge = (computed[0] * 0 + 1e5, computed[1])
    store.compute = lambda paths, entry: huge
    first = store.get(sample, entry)
    second = store.get(sample, entry)
    assert torch.isfinite(first[0]).all() and torch.equal(second[0], huge[0]) and store.hits == 1
    assert "cached in float32" in caplog.text


def test_glove_reader(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("cup 1 0 0\nglass 0 1 0\nbottle 0 0 1\nperson 2 2 2\n")
    assert parse_word_vectors(f"glove:{path}") == path
    table = load_glove(path, ["__background__", "person", "cup/glass/bottle", "unicorn"], dim=3)
    torch.testing.assert_close(table[2], torch.full((3,), 1 / 3))
    assert table[1].tolist() == [2, 2, 2] and table[3].abs().sum() == 0
    with pytest.raises(ValueError, match="expected 4"):
        load_glove(path, ["cup"], dim=4)
    with pytest.raises(ValueError, match="glove:PATH"):
        parse_word_vectors("word2vec:x")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        parse_word_vectors(f"glove:{tmp_path / 'missing.txt'}")


def test_jwyang_faster_rcnn_checkpoint_loads_into_the_backbone(tmp_path):
    """STTran's faster_rcnn_ag.pth layout ({'model': RCNN_base.*, RCNN_top.*, RCNN_cls_score.*}) -> our ResNet."""
    import torchvision
    from vidsgg.features.backbone import FeatureExtractor
    torch.manual_seed(3)
    resnet = torchvision.models.resnet18(weights=None)
    index = {"conv1": "RCNN_base.0", "bn1": "RCNN_base.1", "layer1": "RCNN_base.4", "layer2": "RCNN_base.5",
             "layer3": "RCNN_base.6", "layer4": "RCNN_top.0"}
    state = {f"{index[k.split('.')[0]]}.{k.split('.', 1)[1]}": v for k, v in resnet.state_dict().items()
             if not k.startswith("fc.")}
    state["RCNN_cls_score.weight"] = torch.zeros(37, 512)
    torch.save({"model": state}, tmp_path / "faster_rcnn_ag.pth")
    extractor = FeatureExtractor(18, tmp_path / "faster_rcnn_ag.pth")
    assert torch.equal(extractor.base[0].weight, resnet.conv1.weight)
    assert torch.equal(extractor.base[6][1].conv2.weight, resnet.layer3[1].conv2.weight)
    assert torch.equal(extractor.head[0].bn1.running_var, resnet.layer4[0].bn1.running_var)
    del state["RCNN_base.6.0.conv1.weight"]
    torch.save({"model": state}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="broken.pth: backbone weights lack"):
        FeatureExtractor(18, tmp_path / "broken.pth")


def test_jwyang_weights_run_in_their_caffe_layout_and_input(tmp_path):
    """jwyang's ResNet (STTran's fasterRCNN/lib/model/faster_rcnn/resnet.py) strides in the 1×1 conv1 of each
    stage's first bottleneck, max-pools with padding 0 and ceil_mode, and reads BGR 0–255 minus the Caffe means:
    its weights run so; torchvision weights keep torchvision's layout and ImageNet normalisation."""
    resnet = torchvision.models.resnet50(weights=None)
    index = {"conv1": "RCNN_base.0", "bn1": "RCNN_base.1", "layer1": "RCNN_base.4", "layer2": "RCNN_base.5",
             "layer3": "RCNN_base.6", "layer4": "RCNN_top.0"}
    torch.save({"model": {f"{index[k.split('.')[0]]}.{k.split('.', 1)[1]}": v for k, v in resnet.state_dict().items()
                          if not k.startswith("fc.")}}, tmp_path / "faster_rcnn_ag.pth")
    torch.save(resnet.state_dict(), tmp_path / "resnet50.pth")
    caffe, ours = FeatureExtractor(50, tmp_path / "faster_rcnn_ag.pth"), FeatureExtractor(50, tmp_path / "resnet50.pth")
    for extractor, strided, plain in ((caffe, "conv1", "conv2"), (ours, "conv2", "conv1")):
        for stage in (extractor.base[5], extractor.base[6], extractor.head):
            assert getattr(stage[0], strided).stride == (2, 2) and getattr(stage[0], plain).stride == (1, 1)
            assert all(block.conv1.stride == block.conv2.stride == (1, 1) for block in stage[1:])
    assert (caffe.base[3].padding, caffe.base[3].ceil_mode) == (0, True)
    assert (ours.base[3].padding, ours.base[3].ceil_mode) == (1, False)
    rgb = np.full((4, 6, 3), (200, 100, 50), dtype=np.uint8)
    image, _ = caffe.prepare([rgb])
    assert torch.allclose(image[0, :, 0, 0], torch.tensor([50 - 102.9801, 100 - 115.9465, 200 - 122.7717]),
                          atol=1e-3)
    image, _ = ours.prepare([rgb])
    assert torch.allclose(image[0, :, 0, 0], (torch.tensor([200, 100, 50]) / 255 - torch.tensor(IMAGENET_MEAN))
                          / torch.tensor(IMAGENET_STD), atol=1e-5)
    assert caffe.digest() != ours.digest()  # same tensors, other features: another cache key
    # The stride's place changes the features: conv1 subsamples before the 3×3 sees the map (torchvision: after).
    images = torch.randn(1, 3, 64, 64)
    assert caffe.base(images).shape == ours.base(images).shape == (1, 1024, 4, 4)
    assert not torch.allclose(caffe.base(images), ours.base(images), atol=1e-3)
