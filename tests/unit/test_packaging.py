"""Static checks of what ships beside the code: deployments, docker files, quickstart scripts."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT

#: a value for each required flow parameter a deployment leaves to the person starting the run
EXAMPLES = {"start": "2024-01-02", "end": "2024-03-29", "as_of": "2024-03-29"}


def _schema(flow: object) -> dict[str, object]:
    from prefect.utilities.callables import parameter_schema

    return parameter_schema(flow.fn).model_dump_for_openapi()  # type: ignore[attr-defined]


def test_deployment_entrypoints_import_and_parameters_validate() -> None:
    from prefect.utilities.schema_tools.validation import is_valid_schema, validate

    doc = yaml.safe_load((REPO_ROOT / "deployments/prefect.yaml").read_text())
    assert {d["name"] for d in doc["deployments"]} == {"daily-routine", "backfill", "first-train", "ingest", "report"}
    for dep in doc["deployments"]:
        path, func = dep["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, func)
        assert Path(path).stem == func == flow.name, "file stem = function = flow name (STYLE #3)"
        params = dep.get("parameters", {})
        sig = inspect.signature(flow.fn)
        assert set(params) <= set(sig.parameters), f"{dep['name']}: unknown parameters"
        schema = _schema(flow)
        is_valid_schema(schema)  # what the server stores and renders as the UI form
        run = {**{k: EXAMPLES[k] for k in schema.get("required", []) if k not in params}, **params}  # type: ignore[attr-defined]
        # the server checks a run's parameters against the schema, then the flow against its signature
        assert validate(run, schema) == [], (dep["name"], run)
        flow.validate_parameters(run)


def test_parameter_schema_refuses_what_the_ui_must_refuse() -> None:
    from prefect.utilities.schema_tools.validation import validate

    from flows.backfill import backfill

    schema = _schema(backfill)
    ok = {"start": "2024-01-02", "end": "2024-03-29", "strategies": ["lgb_light"], "chunk": 20}
    assert validate(ok, schema) == []
    for bad in ({**ok, "chunk": 0}, {**ok, "chunk": 261}, {**ok, "strategies": ["nope"]}, {**ok, "start": "soon"}):
        assert validate(bad, schema), bad


def test_compose_file_parses_and_references_existing_files() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker/compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "worker", "redis", "minio", "mlflow"} <= set(services)
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            ctx = (REPO_ROOT / "docker" / build["context"]).resolve()
            assert (ctx / build["dockerfile"]).is_file(), name
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown {dep}"


def test_dockerfile_copies_only_existing_paths() -> None:
    text = (REPO_ROOT / "docker/Dockerfile").read_text()
    for line in text.splitlines():
        m = re.match(r"COPY\s+(.+)\s+\S+$", line.strip())
        if m:
            for src in m.group(1).split():
                assert (REPO_ROOT / src).exists(), f"Dockerfile copies missing {src}"


def test_quickstart_scripts_and_ci_agree() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "scripts/demo.sh" in readme and "scripts/test.sh" in readme
    assert "scripts/test.sh" in (REPO_ROOT / ".ci/run").read_text()
