"""Evaluate a trained model (or the random-weight baseline) on the Action Genome test split under the three
constraints, as STTran's test.py does.

    python vidsgg/test.py -mode predcls -data_path DIR -model_path RUN/checkpoint_best.tar
    python vidsgg/test.py -mode predcls -data_path DIR -random_init True -output OUT   # untrained baseline

The backbone flags must be those of training (the checkpoint records them; a mismatch is an error). Prints a
table of R@K and mR@K and writes metrics.json ("test/with/R@20", ...) to -output (default: the checkpoint's folder).
An unreadable test video is an error; with -strict_data False it is skipped, and the frames it held are counted
("test/frames_skipped", in the table too); the exit status is non-zero when nothing could be evaluated.
Checkpoints in the guide's manual format ({'epoch', 'model_state_dict', ..., 'config'}) are read too.
"""
from __future__ import annotations

from pathlib import Path

import torch

from common.log import setup_logger, write_metrics
from common.seed import seed_everything
from vidsgg import checkpointing
from vidsgg.passes import load_detections, make_store
from vidsgg.evaluation import CONSTRAINTS, KS, skipped_evaluations
from vidsgg.models.build import build_model, model_flags, model_from_checkpoint, word_table
from vidsgg.models.reference import ReferenceWeightsError, is_reference_checkpoint
from vidsgg.options import MODEL_FLAGS, test_parser
from vidsgg.option_checks import validate
from vidsgg.tasks import task_for

BACKBONE_FLAGS = ("backbone_depth", "backbone_weights", "image_size", "max_size")
TEST_TIME_FLAGS = ("pred_contact_threshold", "mem_feat_lambda")


def main(argv: list[str] | None = None) -> dict:
    parser = test_parser()
    args = parser.parse_args(argv)
    if bool(args.model_path) == bool(args.random_init):
        parser.error("give exactly one of -model_path CKPT or -random_init True")
    state = checkpointing.load(args.model_path) if args.model_path else None
    released = None  # a released reference checkpoint ({'state_dict': ...} in STTran's/TEMPURA's/STKET's names)
    if state is not None and is_reference_checkpoint(state):
        if args.model is None or args.mode is None:
            parser.error(f"{args.model_path} is a released reference checkpoint (no config): give -model and -mode")
        released, state = state, None
    state = checkpointing.with_model_config(state) if state is not None else None
    if state is not None:  # the model and dataset are the checkpoint's
        trained = state["config"]
        for flag, value in (("model", state["model_name"]), ("dataset", trained.get("dataset", "action_genome"))):
            if getattr(args, flag) not in (None, value):
                parser.error(f"{args.model_path} holds -{flag} {value}, got -{flag} {getattr(args, flag)}")
            setattr(args, flag, value)
        args.mode = args.mode or state["mode"]  # another mode may be asked for (e.g. an sgcls model in predcls)
        for flag in MODEL_FLAGS.get(args.model, ()):  # the trained model's own flags, unless given again here
            if getattr(args, flag) is None and trained.get(flag) is not None:
                setattr(args, flag, trained[flag])
    args = validate(args, parser)
    output = Path(args.output or Path(args.model_path).parent)
    logger = setup_logger(output, name="test", filename="test_log.txt", packages=("vidsgg",))
    seed_everything(args.seed)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")  # as train.py

    task = task_for(args.dataset)
    dataset = task.dataset(args.data_path, "test", args.mode, args.datasize, allow_outside_data=args.allow_outside_data)
    store = make_store(args, device)
    if args.random_init or released is not None:
        # STKET's priors come from the training annotations (computed once when the prior file is missing).
        train_set = (task.dataset(args.data_path, "train", args.mode, args.datasize,
                                  allow_outside_data=args.allow_outside_data) if args.model == "stket" else None)
        model = build_model(args, store.extractor.c4, store.extractor.c3, word_table(args), train_set)
        if released is None:
            logger.info("Evaluating the untrained %s (random weights, seed %d).", args.model, args.seed)
        else:
            try:
                checkpointing.load_released(model, released, args.model_path, args.model, args.backbone_weights)
            except ReferenceWeightsError as exc:
                parser.error(str(exc))
            logger.info("Evaluating the released %s weights %s (%s).", args.model, args.model_path, args.mode)
    else:
        mismatch = [f"-{k} {getattr(args, k)} (trained with {trained.get(k)})" for k in BACKBONE_FLAGS
                    if trained.get(k) != getattr(args, k)]
        if mismatch:
            parser.error("backbone flags differ from the checkpoint's: " + ", ".join(mismatch))
        if state["mode"] != args.mode and args.mode == "predcls":
            logger.info("Evaluating a %s checkpoint in predcls (GT labels replace its object classifier).",
                        state["mode"])
        model = model_from_checkpoint(state)
        apply_test_flags(model, model_flags(args, args.model), parser)
        model.config.mode = args.mode
        if args.dataset == "action_genome":
            if args.mode != "predcls" and getattr(model, "object_classifier", None) is None:
                parser.error(f"{args.model_path} was trained in predcls and has no object classifier for {args.mode}")
            if args.mode == "predcls":
                model.object_classifier = None
        logger.info("Evaluating %s (%s, epoch %s).", args.model_path, state["model_name"], state["epoch"])
    model.to(device)
    results = task.evaluate(model, dataset, store, args.mode, device, args.mean_recall,
                            load_detections(args.detections), args.max_eval_videos, args.strict_data)

    results.update(skipped_evaluations(dataset, results, args.max_eval_videos))
    log_table(logger, results)
    metrics = {f"test/{k}": v for k, v in results.items()}
    write_metrics(output, metrics)
    unit = "frames" if "frames_skipped" in results else "graphs"
    if results[f"{unit}_skipped"]:
        logger.warning("%d of %d test %s were not evaluated (unreadable videos skipped, -strict_data False): these "
                       "recalls are over the rest.", results[f"{unit}_skipped"], results[f"{unit}_expected"], unit)
    if results[f"{unit}_expected"] == results[f"{unit}_skipped"]:
        raise SystemExit(f"vidsgg/test.py: error: no test {unit} could be evaluated ({results[f'{unit}_expected']} "
                         "expected); see the warnings above")
    return metrics


def log_table(logger, results: dict) -> None:
    """R@K and mR@K in percent, one row per constraint, for the Ks and constraints the evaluator reported, and
    how many frames (graphs) were evaluated and skipped."""
    ks = [k for k in KS if any(key.endswith(f"/R@{k}") for key in results)]
    logger.info("%-6s " + " ".join(f"R@{k:<4}" for k in ks) + "  " + " ".join(f"mR@{k:<4}" for k in ks), "")
    for constraint in [c for c in CONSTRAINTS if f"{c}/R@{ks[0]}" in results]:
        logger.info("%-6s " + " ".join(f"{100 * results.get(f'{constraint}/R@{k}', float('nan')):6.2f}" for k in ks)
                    + "  " + " ".join(f"{100 * results.get(f'{constraint}/mR@{k}', float('nan')):6.2f}" for k in ks),
                    constraint)
    unit = "frames" if "frames_skipped" in results else "graphs"
    logger.info("%s evaluated: %d, skipped (unreadable): %d", unit, results[f"{unit}_expected"] -
                results[f"{unit}_skipped"], results[f"{unit}_skipped"])


def apply_test_flags(model, given: dict, parser) -> None:
    """Model flags given to test.py: the test-time ones (STKET's -pred_contact_threshold, 1.0 in its test script;
    TEMPURA's -mem_feat_lambda) replace the trained value; an architecture flag must match the checkpoint."""
    for name, value in given.items():
        if name in TEST_TIME_FLAGS:
            setattr(model.config, name, value)
        elif getattr(model.config, name, value) != value:
            parser.error(f"-{name} {value} differs from the checkpoint's {getattr(model.config, name)} "
                         "(architecture flags come from the checkpoint)")


if __name__ == "__main__":
    main()
