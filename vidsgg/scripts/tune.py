"""The guide's Optuna search (Bayesian Optimization): lr ~ log-uniform [1e-5, 1e-3], batch_size in {1, 2, 4},
objective the validation R@20 (with constraint) of a train.py run, maximised.

    python vidsgg/scripts/tune.py -study_dir DIR [-n_trials 100] -- -data_path data/action_genome -mode predcls ...

Everything after `--` goes to train.py unchanged (the tuned -lr / -batch_size and each trial's -save_path
DIR/trial_N are appended). The study lives in DIR/optuna.db (SQLite), so an interrupted search continues where
it stopped when run again with the same -study_dir; each trial keeps its run folder and metrics.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

import optuna

from vidsgg import train
from vidsgg.options import StrictParser

OBJECTIVE = "val/with/R@20"


def objective_for(study_dir: Path, train_flags: list[str]):
    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-5, 1e-3, log=True)  # the guide's suggest_loguniform (deprecated name)
        batch_size = trial.suggest_categorical("batch_size", [1, 2, 4])
        metrics = train.main([*train_flags, "-lr", repr(lr), "-batch_size", str(batch_size),
                              "-save_path", str(study_dir / f"trial_{trial.number}")])
        if OBJECTIVE not in metrics:
            raise RuntimeError(f"trial {trial.number}: train.py reported no {OBJECTIVE} (is -eval_freq ≤ -epochs?)")
        return metrics[OBJECTIVE]
    return objective


def main(argv: list[str] | None = None) -> optuna.Study:
    argv = sys.argv[1:] if argv is None else argv
    ours, train_flags = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = StrictParser(prog="tune", allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("-study_dir", required=True, help="folder of optuna.db and the trials' run folders")
    parser.add_argument("-n_trials", type=int, default=100, help="trials to run in this call (100, as the guide)")
    parser.add_argument("-seed", type=int, default=0, help="seed of the TPE sampler")
    args = parser.parse_args(ours)
    if args.n_trials < 1:
        parser.error(f"-n_trials must be ≥ 1, got {args.n_trials}")
    if any(flag in train_flags for flag in ("-lr", "-batch_size", "-save_path")):
        parser.error("-lr, -batch_size and -save_path are set per trial: leave them out of the train.py flags")
    study_dir = Path(args.study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name="vidsgg", storage=f"sqlite:///{study_dir / 'optuna.db'}",
                                direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=args.seed))
    study.optimize(objective_for(study_dir, train_flags), n_trials=args.n_trials)
    print(f"best {OBJECTIVE} {study.best_value:.4f} with {study.best_params} ({len(study.trials)} trials in "
          f"{study_dir / 'optuna.db'})")
    return study


if __name__ == "__main__":
    main()
