"""Count STKET's knowledge priors on the Action Genome training annotations and write TrainPrior.json.

    python vidsgg/scripts/compute_priors.py -data_path DIR [-out FILE] [-datasize mini|small|large]
    python -m vidsgg.scripts.compute_priors -data_path DIR

-out defaults to <data_path>/TrainPrior.json, where train.py looks for it (-prior_path overrides); train.py also
computes it on the fly when it is missing. The file layout is described in vidsgg/models/priors.py.
"""
from __future__ import annotations

from pathlib import Path

from vidsgg.data.action_genome import DATASIZES, ActionGenome, AnnotationError
from vidsgg.models.priors import PriorFileError, count_priors, write_prior_file
from vidsgg.options import StrictParser


def main(argv: list[str] | None = None) -> Path:
    parser = StrictParser(prog="compute_priors", allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("-data_path", required=True, help="Action Genome root (annotations/)")
    parser.add_argument("-out", default=None, help="output file (default <data_path>/TrainPrior.json)")
    parser.add_argument("-datasize", choices=DATASIZES, default="large", help="training videos counted (as train.py)")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.data_path) / "TrainPrior.json"
    try:
        train_set = ActionGenome(args.data_path, "train", "predcls", args.datasize)
        counts = count_priors(train_set[i]["gt_annotation"] for i in range(len(train_set)))
        write_prior_file(out, counts)
    except (AnnotationError, FileNotFoundError, PriorFileError, OSError) as exc:
        parser.error(str(exc))
    print(f"{out}: priors of {int((counts['objects'] > 0).sum())} object classes from {len(train_set)} training "
          f"videos ({int(counts['objects'].sum())} objects, {int(counts['transitions'].sum())} contact transitions)")
    return out


if __name__ == "__main__":
    main()
