"""The model registry on MLflow: an experiment per strategy, a run and a registered version per task.

Only ``MlflowClient`` is used (thread-safe, no global active run), so tasks can train and register
in parallel threads. Artifacts are plain files: the LightGBM text model, processor state as JSON,
the feature list and the task — no pickle anywhere in the model path.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quant_core.errors import QonlineError
from quant_core.rolling import RollingTask
from quant_core.training import TrainedModel, task_json

logger = logging.getLogger(__name__)
ONLINE_ALIAS = "online"
_LOCK = threading.Lock()


class RegistryError(QonlineError):
    """MLflow cannot be reached or refused a write; nothing was registered."""


@dataclass(frozen=True)
class ModelInfo:
    """A registered model version, as ``qonline models list`` shows it."""

    version: int
    task_id: str
    segments: dict[str, list[str | None]]
    metrics: dict[str, float]
    online: bool
    run_id: str
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "task_id": self.task_id, "segments": self.segments,
                "metrics": self.metrics, "online": self.online, "run_id": self.run_id,
                "fingerprint": self.fingerprint}


def _segments_dict(task: RollingTask) -> dict[str, list[str | None]]:
    s = task.segments
    return {k: [seg.start.isoformat(), seg.end.isoformat() if seg.end else None]
            for k, seg in (("train", s.train), ("valid", s.valid), ("test", s.test))}


class ModelRegistry:
    """MLflow tracking + model registry for qonline's strategies.

    Args:
        tracking_uri: ``sqlite:///...``, ``http(s)://...`` or a file store.
        artifact_root: where new experiments keep artifacts (``file://`` folder or ``s3://``); ``None``
            lets the tracking server decide (for sqlite: ``<db folder>/mlartifacts``).
    """

    def __init__(self, tracking_uri: str, artifact_root: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        if artifact_root is None and tracking_uri.startswith("sqlite:///"):
            artifact_root = Path(tracking_uri.removeprefix("sqlite:///")).parent.joinpath("mlartifacts").as_uri()
        self.artifact_root = artifact_root
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def check_reachable(self) -> None:
        try:
            self.client.search_experiments(max_results=1)
        except Exception as exc:
            raise RegistryError(f"MLflow tracking at {self.tracking_uri} cannot be reached: {exc}") from exc

    # -- experiments and names ----------------------------------------------------------------------
    def experiment_id(self, strategy: str) -> str:
        with _LOCK:
            exp = self.client.get_experiment_by_name(strategy)
            if exp is not None:
                return str(exp.experiment_id)
            location = f"{self.artifact_root.rstrip('/')}/{strategy}" if self.artifact_root else None
            return str(self.client.create_experiment(strategy, artifact_location=location))

    def _ensure_registered_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        with _LOCK:
            try:
                self.client.get_registered_model(name)
            except MlflowException:
                self.client.create_registered_model(name, description=f"qonline rolling models of strategy {name}")

    # -- lookup ---------------------------------------------------------------------------------------
    def _versions(self, strategy: str) -> list[Any]:
        from mlflow.exceptions import MlflowException

        try:
            return list(self.client.search_model_versions(f"name='{strategy}'"))
        except MlflowException:
            return []

    def find(self, task: RollingTask, fingerprint: str) -> ModelInfo | None:
        """The version already trained for this task on this data, if any."""
        for mv in self._versions(task.strategy):
            tags = mv.tags or {}
            if tags.get("task_id") == task.task_id and tags.get("fingerprint") == fingerprint:
                return self._info(task.strategy, mv)
        return None

    def list(self, strategy: str) -> list[ModelInfo]:
        """Every registered version of a strategy, oldest first."""
        return sorted((self._info(strategy, mv) for mv in self._versions(strategy)), key=lambda m: m.version)

    def online_version(self, strategy: str) -> int | None:
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(strategy, ONLINE_ALIAS).version)
        except MlflowException:
            return None

    def _info(self, strategy: str, mv: Any) -> ModelInfo:
        tags = mv.tags or {}
        run = self.client.get_run(mv.run_id)
        segments = json.loads(tags.get("segments", "{}"))
        metrics = {k: float(v) for k, v in run.data.metrics.items()}
        online = ONLINE_ALIAS in (getattr(mv, "aliases", None) or [])
        return ModelInfo(int(mv.version), tags.get("task_id", ""), segments, metrics, online, mv.run_id,
                         tags.get("fingerprint", ""))

    def load_model_text(self, strategy: str, version: int) -> str:
        mv = self.client.get_model_version(strategy, str(version))
        with tempfile.TemporaryDirectory() as tmp:
            if mv.run_id is None:
                raise RegistryError(f"{strategy} version {version} has no run")
            path = self.client.download_artifacts(mv.run_id, "model/model.txt", tmp)
            return Path(path).read_text()

    # -- write ----------------------------------------------------------------------------------------
    def register(self, trained: TrainedModel) -> ModelInfo:
        """Log a trained task as a run and register it as a version, all or nothing.

        If any step fails the run is deleted and no version remains, so a retry starts clean.
        """
        task = trained.task
        exp_id = self.experiment_id(task.strategy)
        run = self.client.create_run(
            exp_id, run_name=f"{task.strategy} test {task.segments.test.start}",
            tags={"task_id": task.task_id, "fingerprint": trained.fingerprint, "strategy": task.strategy},
        )
        run_id = run.info.run_id
        version: str | None = None
        try:
            from mlflow.entities import Metric, Param

            segs = _segments_dict(task)
            params = {
                "task_id": task.task_id, "feature_set": task.feature_set, "label": task.label,
                "processors": json.dumps([p.model_dump() for p in task.processors], sort_keys=True),
                "data_fingerprint": trained.fingerprint,
                **{f"segment_{k}": f"{v[0]}..{v[1] or ''}" for k, v in segs.items()},
                **{f"model_{k}": str(v) for k, v in sorted(task.model_params.items())},
            }
            now = int(__import__("time").time() * 1000)
            metrics = [Metric(k, float(v), now, 0) for k, v in trained.metrics.items() if v == v]
            metrics.append(Metric("fit_seconds", trained.fit_seconds, now, 0))
            self.client.log_batch(run_id, metrics=metrics, params=[Param(k, v[:6000]) for k, v in params.items()])
            with tempfile.TemporaryDirectory() as tmp:
                d = Path(tmp) / "model"
                d.mkdir()
                (d / "model.txt").write_text(trained.model_text)
                (d / "processors.json").write_text(trained.processors_json)
                (d / "features.json").write_text(json.dumps(list(trained.feature_names)))
                (d / "task.json").write_text(task_json(task))
                self.client.log_artifacts(run_id, str(d), artifact_path="model")
            self._ensure_registered_model(task.strategy)
            source = f"{run.info.artifact_uri.rstrip('/')}/model"
            with _LOCK:
                mv = self.client.create_model_version(
                    task.strategy, source=source, run_id=run_id,
                    tags={"task_id": task.task_id, "fingerprint": trained.fingerprint,
                          "segments": json.dumps(segs), "test_start": task.segments.test.start.isoformat()},
                )
            version = str(mv.version)
            self.client.set_terminated(run_id, "FINISHED")
        except Exception as exc:
            self._undo(task.strategy, run_id, version)
            raise RegistryError(f"task {task.task_id}: registering in MLflow ({self.tracking_uri}) failed: {exc}") from exc
        logger.info("registered %s version %s for task %s", task.strategy, version, task.task_id)
        return self._info(task.strategy, self.client.get_model_version(task.strategy, version))

    def _undo(self, strategy: str, run_id: str, version: str | None) -> None:
        try:
            if version is not None:
                self.client.delete_model_version(strategy, version)
            self.client.set_terminated(run_id, "FAILED")
            self.client.delete_run(run_id)
        except Exception:  # the original error matters more; leave a trace
            logger.exception("could not fully undo run %s of %s", run_id, strategy)
