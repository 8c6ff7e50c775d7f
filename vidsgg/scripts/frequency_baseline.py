"""The per-class predicate frequency prior: the strongest cheap PredCLS baseline, scored by the same evaluator.

    python vidsgg/scripts/frequency_baseline.py -data_path DIR [-output DIR] [-datasize mini|small|large]

Every (person, object) pair of a test frame gets, for its object class, the mean multi-hot relation vector of that
class over the training annotations (STKET's "initial" prior, vidsgg/models/priors.py): no image, no model. A
trained PredCLS model is worth reporting only by how far it is above this number. Writes OUTPUT/metrics.json with
the same `test/...` keys as test.py.
"""
from __future__ import annotations

from pathlib import Path

import torch

from common.log import write_metrics
from vidsgg.data.action_genome import DATASIZES, ActionGenome, AnnotationError
from vidsgg.data.classes import NUM_ATTENTION, NUM_SPATIAL
from vidsgg.data.entries import build_entry
from vidsgg.evaluation import CONSTRAINTS, SceneGraphEvaluator
from vidsgg.models.priors import count_priors
from vidsgg.options import StrictParser


def prior_prediction(entry: dict, initial: torch.Tensor) -> dict:
    """entry of one video (predcls) and the (37, 26) class prior -> the evaluator's prediction dict."""
    rows = initial[entry["labels"][entry["pair_idx"][:, 1]]].float()
    spatial0, contact0 = NUM_ATTENTION, NUM_ATTENTION + NUM_SPATIAL
    pred = {k: entry[k] for k in ("boxes", "labels", "scores", "im_idx", "pair_idx")}
    pred.update(attention_distribution=rows[:, :spatial0].clamp_min(1e-6).log(),  # the evaluator softmaxes it
                spatial_distribution=rows[:, spatial0:contact0], contacting_distribution=rows[:, contact0:])
    return pred


def main(argv: list[str] | None = None) -> dict:
    parser = StrictParser(prog="frequency_baseline", allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("-data_path", required=True, help="Action Genome root (annotations/)")
    parser.add_argument("-output", default=None, help="folder of metrics.json (default <data_path>/frequency_baseline)")
    parser.add_argument("-datasize", choices=DATASIZES, default="large", help="videos used, as train.py/test.py")
    args = parser.parse_args(argv)
    try:
        train_set = ActionGenome(args.data_path, "train", "predcls", args.datasize)
        test_set = ActionGenome(args.data_path, "test", "predcls", args.datasize)
    except (AnnotationError, FileNotFoundError) as exc:
        parser.error(str(exc))
    initial = count_priors(train_set[i]["gt_annotation"] for i in range(len(train_set)))["initial"]
    evaluators = {c: SceneGraphEvaluator("predcls", c) for c in CONSTRAINTS}
    for index in range(len(test_set)):
        annotation = test_set[index]["gt_annotation"]
        entry = build_entry(annotation, "predcls", training=False)
        if len(entry["pair_idx"]):
            for evaluator in evaluators.values():
                evaluator.evaluate_scene_graph(annotation, prior_prediction(entry, initial))
    metrics = {f"test/{c}/{k}": v for c, e in evaluators.items() for k, v in e.summary().items()}
    write_metrics(Path(args.output or Path(args.data_path) / "frequency_baseline"), metrics)
    print(f"frequency prior: with-constraint R@20 {metrics['test/with/R@20']:.3f} over {len(test_set)} test videos")
    return metrics


if __name__ == "__main__":
    main()
