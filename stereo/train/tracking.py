"""MLflow experiment tracking (the guide's `--enable_mlflow`, on by default), main rank only.

The tracking store is $MLFLOW_TRACKING_URI when set, else a local SQLite store `WORKSPACE/mlflow.db` (MLflow's
file store is in maintenance mode) with artifacts in `WORKSPACE/mlartifacts`. Logged: the resolved config and
run settings as params (dotted keys), the training and validation scalars as metrics, config.json and
metrics.json as artifacts. A resumed run continues its MLflow run (its id is saved in the checkpoint).

    mlflow ui --backend-store-uri sqlite:///WORKSPACE/mlflow.db
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
EXPERIMENT = "stereo"


def flat_params(tree: dict, prefix: str = "") -> dict[str, str]:
    """{"data": {"image_sizes": [[W, H]]}} -> {"data.image_sizes": "[[W, H]]"} (MLflow params are strings)."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flat_params(value, name))
        else:
            flat[name] = str(value)[:6000]  # MLflow's limit on a param value
    return flat


class Tracker:
    """`Tracker(None)` does nothing, so the training loop calls it unconditionally."""

    def __init__(self, mlflow=None, run_id: str | None = None):
        self.mlflow, self.run_id = mlflow, run_id

    def metrics(self, values: dict, step: int | None = None) -> None:
        if self.mlflow is not None:
            numbers = {key.replace("/", "_"): float(value) for key, value in values.items()
                       if isinstance(value, (int, float)) and value == value}  # NaN is not loggable
            self.mlflow.log_metrics(numbers, step=step)

    def artifact(self, path: str | Path) -> None:
        if self.mlflow is not None and Path(path).is_file():
            self.mlflow.log_artifact(str(path))

    def end(self) -> None:
        if self.mlflow is not None:
            self.mlflow.end_run()
            self.mlflow = None


def start_tracking(enabled: bool, workspace: str | Path, params: dict, run_id: str | None = None) -> Tracker:
    """Start (or, with `run_id`, continue) the MLflow run of this workspace; Tracker(None) when disabled."""
    if not enabled:
        return Tracker()
    try:
        import mlflow
    except ImportError as exc:
        raise RuntimeError("--enable_mlflow true needs the mlflow package (pip install -r requirements.txt), or "
                           "pass --enable_mlflow false; TensorBoard logging is always on.") from exc
    workspace = Path(workspace).resolve()
    local = "MLFLOW_TRACKING_URI" not in os.environ
    mlflow.set_tracking_uri(f"sqlite:///{workspace / 'mlflow.db'}" if local else os.environ["MLFLOW_TRACKING_URI"])
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the SQLite schema set-up is chatty
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        # A database store without a server keeps its artifacts in the workspace: MLflow's default is ./mlruns of
        # whatever folder the run was started from. A tracking server decides for itself.
        served = not local and os.environ["MLFLOW_TRACKING_URI"].startswith(("http://", "https://", "databricks"))
        mlflow.create_experiment(EXPERIMENT, artifact_location=None if served else (workspace / "mlartifacts").as_uri())
    mlflow.set_experiment(EXPERIMENT)
    if run_id is not None:
        try:
            run = mlflow.start_run(run_id=run_id)
            log.info("MLflow: continuing run %s (%s)", run_id, mlflow.get_tracking_uri())
            return Tracker(mlflow, run.info.run_id)
        except mlflow.exceptions.MlflowException as exc:
            log.warning("MLflow run %s not found in %s (%s): starting a new run.", run_id, mlflow.get_tracking_uri(),
                        str(exc).splitlines()[0])
    run = mlflow.start_run(run_name=workspace.name)
    mlflow.log_params(flat_params(params))
    log.info("MLflow: run %s in %s", run.info.run_id, mlflow.get_tracking_uri())
    return Tracker(mlflow, run.info.run_id)
