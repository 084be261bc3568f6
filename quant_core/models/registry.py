"""The model registry on MLflow: an experiment per strategy, a run and a registered version per task.

Only ``MlflowClient`` is used (thread-safe, no global active run), so tasks can train and register
in parallel threads or processes. Artifacts are plain files: the LightGBM text model, processor
state as JSON, the feature list and the task — no pickle anywhere in the model path.

Several writers share one registry (parallel training on threads, Dask worker processes, a backfill
next to the scheduled run), so:

- the experiment and the registered model are created before a fan-out (:meth:`ModelRegistry.prepare`)
  and "already exists" from another process counts as success;
- transient errors (a locked sqlite, a restarting server, a dropped connection) are retried, every
  other error is raised — a lookup never turns an error into "not found", which would train and
  register a task twice;
- a version is only ever reused when its run finished; a failed registration deletes its version
  (found by run id, so a lost reply to ``create_model_version`` is cleaned up too), its artifacts
  and its run.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from quant_core.errors import QonlineError
from quant_core.models.rolling import RollingError, RollingTask
from quant_core.models.training import TrainedModel, task_json
from quant_core.online.predictions import ModelArtifacts

logger = logging.getLogger(__name__)
ONLINE_ALIAS = "online"
_LOCK = threading.Lock()
T = TypeVar("T")

#: seconds between attempts at a transient MLflow error
RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0)
_TRANSIENT_CODES = frozenset({"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED", "ABORTED",
                              "DEADLINE_EXCEEDED"})
_TRANSIENT_WORDS = ("database is locked", "connection", "timed out", "timeout", "temporarily unavailable",
                    "max retries exceeded", "503", "502", "504")


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
    test_start: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "task_id": self.task_id, "segments": self.segments,
                "metrics": self.metrics, "online": self.online, "run_id": self.run_id,
                "fingerprint": self.fingerprint, "test_start": self.test_start}


def _segments_dict(task: RollingTask) -> dict[str, list[str | None]]:
    s = task.segments
    return {k: [seg.start.isoformat(), seg.end.isoformat() if seg.end else None]
            for k, seg in (("train", s.train), ("valid", s.valid), ("test", s.test))}


def is_transient(exc: BaseException) -> bool:
    """True for MLflow errors worth another attempt (busy store, server restarting, network)."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        code = str(getattr(exc, "error_code", ""))
        text = str(exc).lower()
        return code in _TRANSIENT_CODES or any(w in text for w in _TRANSIENT_WORDS)
    return isinstance(exc, OSError | ConnectionError | TimeoutError) or "database is locked" in str(exc).lower()


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", ""))


class ModelRegistry:
    """MLflow tracking + model registry for qonline's strategies.

    Args:
        tracking_uri: ``sqlite:///...``, ``http(s)://...`` or a file store.
        artifact_root: where new experiments keep artifacts (``file://`` folder or ``s3://``); ``None``
            lets the tracking server decide (for sqlite: ``<db folder>/mlartifacts``).
        retry_delays: pauses between attempts at a transient error (tests shorten them).
    """

    def __init__(self, tracking_uri: str, artifact_root: str | None = None, *,
                 retry_delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        if artifact_root is None and tracking_uri.startswith("sqlite:///"):
            artifact_root = Path(tracking_uri.removeprefix("sqlite:///")).parent.joinpath("mlartifacts").as_uri()
        self.artifact_root = artifact_root
        self.retry_delays = retry_delays
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args)``, retrying transient errors; anything else is raised as it is."""
        for attempt, delay in enumerate((*self.retry_delays, None)):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if delay is None or not is_transient(exc):
                    raise
                logger.info("MLflow %s: transient error (%s), attempt %d again in %.1fs", what, exc, attempt + 2,
                            delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def check_reachable(self) -> None:
        try:
            self._call("ping", self.client.search_experiments, max_results=1)
        except Exception as exc:
            raise RegistryError(f"MLflow tracking at {self.tracking_uri} cannot be reached: {exc}") from exc

    # -- experiments and names ----------------------------------------------------------------------
    def prepare(self, strategy: str) -> str:
        """Make sure the strategy's experiment and registered model exist; returns the experiment id.

        Call it before fanning tasks out: parallel workers then only add runs and versions. Another
        process creating the same experiment or model at the same moment is not an error.
        """
        from mlflow.exceptions import MlflowException

        try:
            exp_id = self.experiment_id(strategy)
            with _LOCK:
                try:
                    self._call("get registered model", self.client.get_registered_model, strategy)
                except MlflowException as exc:
                    if _code(exc) != "RESOURCE_DOES_NOT_EXIST":
                        raise
                    try:
                        self._call("create registered model", self.client.create_registered_model, strategy,
                                   description=f"qonline rolling models of strategy {strategy}")
                    except MlflowException as again:
                        if _code(again) != "RESOURCE_ALREADY_EXISTS":
                            raise
        except MlflowException as exc:
            raise RegistryError(f"MLflow ({self.tracking_uri}): cannot prepare strategy {strategy!r}: {exc}") from exc
        return exp_id

    def experiment_id(self, strategy: str) -> str:
        from mlflow.exceptions import MlflowException

        with _LOCK:
            exp = self._call("get experiment", self.client.get_experiment_by_name, strategy)
            if exp is not None:
                return str(exp.experiment_id)
            location = f"{self.artifact_root.rstrip('/')}/{strategy}" if self.artifact_root else None
            try:
                return str(self._call("create experiment", self.client.create_experiment, strategy,
                                      artifact_location=location))
            except MlflowException as exc:
                if _code(exc) != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = self._call("get experiment", self.client.get_experiment_by_name, strategy)
                assert exp is not None
                return str(exp.experiment_id)

    # -- lookup ---------------------------------------------------------------------------------------
    def _search(self, filter_string: str) -> list[Any]:
        """Model versions matching a filter; a missing registered model is an empty list, other errors raise."""
        from mlflow.exceptions import MlflowException

        try:
            return list(self._call("search versions", self.client.search_model_versions, filter_string))
        except MlflowException as exc:
            if _code(exc) == "RESOURCE_DOES_NOT_EXIST":
                return []
            raise RegistryError(f"MLflow ({self.tracking_uri}): searching model versions ({filter_string}) failed: "
                                f"{exc}") from exc

    def _aliases(self, strategy: str) -> dict[int, list[str]]:
        """``{version: [aliases]}`` from the registered model.

        ``search_model_versions`` on the SQL store of MLflow 3.17 returns versions without their
        aliases (checked in tests/integration/test_training.py), so they are read from the model.
        """
        from mlflow.exceptions import MlflowException

        try:
            model = self._call("get registered model", self.client.get_registered_model, strategy)
        except MlflowException as exc:
            if _code(exc) == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise RegistryError(f"MLflow ({self.tracking_uri}): reading {strategy!r} failed: {exc}") from exc
        out: dict[int, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            out.setdefault(int(version), []).append(alias)
        return out

    def _finished_runs(self, run_ids: list[str]) -> dict[str, Any]:
        """The FINISHED, not deleted runs among ``run_ids``, by id."""
        from mlflow.exceptions import MlflowException

        out: dict[str, Any] = {}
        for run_id in run_ids:
            try:
                run = self._call("get run", self.client.get_run, run_id)
            except MlflowException as exc:
                if _code(exc) == "RESOURCE_DOES_NOT_EXIST":
                    continue
                raise RegistryError(f"MLflow ({self.tracking_uri}): reading run {run_id} failed: {exc}") from exc
            if run.info.status == "FINISHED" and run.info.lifecycle_stage == "active":
                out[run_id] = run
        return out

    def _infos(self, strategy: str, versions: list[Any]) -> list[ModelInfo]:
        runs = self._finished_runs([mv.run_id for mv in versions])
        aliases = self._aliases(strategy) if versions else {}
        out = []
        for mv in versions:
            run = runs.get(mv.run_id)
            if run is None:  # an unfinished or failed registration: never served, never reused
                continue
            tags = mv.tags or {}
            out.append(ModelInfo(
                int(mv.version), tags.get("task_id", ""), json.loads(tags.get("segments", "{}")),
                {k: float(v) for k, v in run.data.metrics.items()},
                ONLINE_ALIAS in aliases.get(int(mv.version), []), mv.run_id, tags.get("fingerprint", ""),
                tags.get("test_start", ""),
            ))
        return sorted(out, key=lambda m: m.version)

    def find(self, task: RollingTask, fingerprint: str) -> ModelInfo | None:
        """The finished version already trained for this task on this data, if any (lookup by tag)."""
        for info in self.by_task(task.strategy, task.task_id):
            if info.fingerprint == fingerprint:
                return info
        return None

    def by_task(self, strategy: str, task_id: str) -> list[ModelInfo]:
        """The finished versions of one task (several if it was retrained on changed data)."""
        return self._infos(strategy, self._search(f"name='{strategy}' and tag.task_id='{task_id}'"))

    def by_test_start(self, strategy: str, test_start: str) -> list[ModelInfo]:
        """The finished versions whose test segment starts on ``test_start`` (ISO date)."""
        return self._infos(strategy, self._search(f"name='{strategy}' and tag.test_start='{test_start}'"))

    def list(self, strategy: str) -> list[ModelInfo]:
        """Every finished registered version of a strategy, oldest first."""
        return self._infos(strategy, self._search(f"name='{strategy}'"))

    def latest(self, strategy: str) -> tuple[ModelInfo, RollingTask] | None:
        """The strategy's latest task (the greatest test start; the newest version among equals).

        This is where the rolling step of the daily routine continues from
        (``RollingGen.following(task, calendar, as_of)``). ``None`` when nothing is registered.
        """
        versions = self._search(f"name='{strategy}'")
        ranked = sorted(versions, key=lambda mv: ((mv.tags or {}).get("test_start", ""), int(mv.version)),
                        reverse=True)
        for mv in ranked:
            infos = self._infos(strategy, [mv])
            if infos:
                return infos[0], self.task_of(strategy, mv)
        return None

    def task_of(self, strategy: str, mv: Any) -> RollingTask:
        """The task a version was trained for, from its ``task`` tag (or its ``task.json`` artifact)."""
        text = (mv.tags or {}).get("task")
        if text is None:
            with tempfile.TemporaryDirectory() as tmp:
                path = self._call("download", self.client.download_artifacts, mv.run_id, "model/task.json", tmp)
                text = Path(path).read_text()
        try:
            return RollingTask.from_json(text)
        except RollingError as exc:
            raise RegistryError(f"{strategy} version {mv.version}: its task cannot be read ({exc})") from exc

    def online_version(self, strategy: str) -> int | None:
        for version, names in self._aliases(strategy).items():
            if ONLINE_ALIAS in names:
                return version
        return None

    def set_alias(self, strategy: str, version: int, alias: str = ONLINE_ALIAS) -> None:
        """Point ``alias`` at ``version`` in one registry call (the previous holder loses it at once)."""
        from mlflow.exceptions import MlflowException

        try:
            self._call("set alias", self.client.set_registered_model_alias, strategy, alias, str(version))
        except MlflowException as exc:
            raise RegistryError(f"{strategy}: cannot point alias {alias!r} at version {version}: {exc}") from exc

    def artifacts(self, strategy: str, version: int) -> ModelArtifacts:
        """A version's model files as text (LightGBM model, processor state, feature list): one download.

        Raises:
            RegistryError: the version does not exist or its artifacts are missing.
        """
        from mlflow.exceptions import MlflowException

        try:
            mv = self._call("get version", self.client.get_model_version, strategy, str(version))
        except MlflowException as exc:
            raise RegistryError(f"{strategy} has no version {version} in MLflow ({self.tracking_uri})") from exc
        if mv.run_id is None:
            raise RegistryError(f"{strategy} version {version} has no run")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                root = Path(self._call("download", self.client.download_artifacts, mv.run_id, "model", tmp))
                return ModelArtifacts((root / "model.txt").read_text(), (root / "processors.json").read_text(),
                                      (root / "features.json").read_text())
            except (MlflowException, OSError) as exc:
                raise RegistryError(f"{strategy} version {version}: its model artifacts (run {mv.run_id}, "
                                    f"model/model.txt, processors.json, features.json) cannot be read: {exc}") from exc

    def version_info(self, strategy: str, version: int) -> ModelInfo:
        """One finished version, or :class:`RegistryError` naming the strategy's versions."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self._call("get version", self.client.get_model_version, strategy, str(version))
        except MlflowException as exc:
            known = [m.version for m in self.list(strategy)]
            raise RegistryError(f"{strategy} has no version {version} (its versions: {known or 'none'})") from exc
        infos = self._infos(strategy, [mv])
        if not infos:
            raise RegistryError(f"{strategy} version {version} did not finish registering; it cannot serve")
        return infos[0]

    def task_of_version(self, strategy: str, version: int) -> RollingTask:
        """The rolling task a version was trained for."""
        self.version_info(strategy, version)  # a missing or unfinished version is named here
        mv = self._call("get version", self.client.get_model_version, strategy, str(version))
        return self.task_of(strategy, mv)

    def tag_version(self, strategy: str, version: int, key: str, value: str) -> None:
        self._call("tag version", self.client.set_model_version_tag, strategy, str(version), key, value)

    def log_live_metrics(self, run_id: str, rows: Sequence[tuple[date, dict[str, float]]]) -> int:
        """Log live metrics on a version's run, step = the date as ``YYYYMMDD``; steps already logged are skipped."""
        from mlflow.entities import Metric

        if not rows:
            return 0
        names = sorted({k for _d, m in rows for k in m})
        seen = {n: {m.step for m in self._call("history", self.client.get_metric_history, run_id, n)} for n in names}
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(d.strftime("%Y%m%d"))) for d, m in rows for k, v in m.items()
                   if v == v and int(d.strftime("%Y%m%d")) not in seen[k]]
        for i in range(0, len(metrics), 900):
            self._call("log", self.client.log_batch, run_id, metrics=metrics[i:i + 900])
        return len(metrics)

    def load_model_text(self, strategy: str, version: int) -> str:
        mv = self._call("get version", self.client.get_model_version, strategy, str(version))
        with tempfile.TemporaryDirectory() as tmp:
            if mv.run_id is None:
                raise RegistryError(f"{strategy} version {version} has no run")
            path = self._call("download", self.client.download_artifacts, mv.run_id, "model/model.txt", tmp)
            return Path(path).read_text()

    # -- write ----------------------------------------------------------------------------------------
    def register(self, trained: TrainedModel) -> ModelInfo:
        """Log a trained task as a run and register it as a version, all or nothing.

        If any step fails, the version (found by run id), the artifacts and the run are deleted, so
        nothing half-registered remains and a retry starts clean.
        """
        task = trained.task
        exp_id = self.prepare(task.strategy)
        run = self._call("create run", self.client.create_run, exp_id,
                         run_name=f"{task.strategy} test {task.segments.test.start}",
                         tags={"task_id": task.task_id, "fingerprint": trained.fingerprint,
                               "strategy": task.strategy})
        run_id = run.info.run_id
        try:
            version = self._log_and_register(trained, run_id, run.info.artifact_uri)
        except Exception as exc:
            self._undo(task.strategy, run_id)
            raise RegistryError(f"task {task.task_id}: registering in MLflow ({self.tracking_uri}) failed: {exc}") from exc
        logger.info("registered %s version %s for task %s", task.strategy, version, task.task_id)
        found = [i for i in self.by_task(task.strategy, task.task_id) if i.version == int(version)]
        if not found:
            raise RegistryError(f"task {task.task_id}: version {version} was registered but cannot be read back")
        return found[0]

    def _log_and_register(self, trained: TrainedModel, run_id: str, artifact_uri: str) -> str:
        from mlflow.entities import Metric, Param

        task = trained.task
        segs = _segments_dict(task)
        params = {
            "task_id": task.task_id, "feature_set": task.feature_set, "label": task.label,
            "processors": json.dumps([p.model_dump() for p in task.processors], sort_keys=True),
            "data_fingerprint": trained.fingerprint,
            **{f"segment_{k}": f"{v[0]}..{v[1] or ''}" for k, v in segs.items()},
            **{f"model_{k}": str(v) for k, v in sorted(task.model_params.items())},
        }
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in trained.metrics.items() if v == v]
        metrics.append(Metric("fit_seconds", trained.fit_seconds, now, 0))
        self._call("log", self.client.log_batch, run_id, metrics=metrics,
                   params=[Param(k, v[:6000]) for k, v in params.items()])
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp) / "model"
            d.mkdir()
            (d / "model.txt").write_text(trained.model_text)
            (d / "processors.json").write_text(trained.processors_json)
            (d / "features.json").write_text(json.dumps(list(trained.feature_names)))
            (d / "task.json").write_text(task_json(task))
            self._call("log artifacts", self.client.log_artifacts, run_id, str(d), artifact_path="model")
        # not retried: a lost reply would register a second version (the undo finds it by run id)
        mv = self.client.create_model_version(
            task.strategy, source=f"{artifact_uri.rstrip('/')}/model", run_id=run_id,
            tags={"task_id": task.task_id, "fingerprint": trained.fingerprint, "segments": json.dumps(segs),
                  "test_start": task.segments.test.start.isoformat(), "task": task.to_json()},
        )
        self._call("finish run", self.client.set_terminated, run_id, "FINISHED")
        return str(mv.version)

    def _undo(self, strategy: str, run_id: str) -> None:
        """Delete every trace of a failed registration: versions of the run, artifacts, the run."""
        try:
            for mv in self._search(f"run_id='{run_id}'"):
                self._call("delete version", self.client.delete_model_version, strategy, mv.version)
        except Exception:  # the original error matters more; leave a trace
            logger.exception("could not delete the versions of failed run %s of %s", run_id, strategy)
        try:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            run = self._call("get run", self.client.get_run, run_id)
            get_artifact_repository(run.info.artifact_uri).delete_artifacts()  # type: ignore[no-untyped-call]
        except Exception:
            logger.warning("could not delete the artifacts of failed run %s of %s", run_id, strategy, exc_info=True)
        try:
            self._call("fail run", self.client.set_terminated, run_id, "FAILED")
            self._call("delete run", self.client.delete_run, run_id)
        except Exception:
            logger.exception("could not delete failed run %s of %s", run_id, strategy)
