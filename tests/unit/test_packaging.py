"""Static checks of what ships beside the code: deployments, docker files, quickstart scripts."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT


def test_deployment_entrypoints_import_and_parameters_validate() -> None:
    doc = yaml.safe_load((REPO_ROOT / "deployments/prefect.yaml").read_text())
    assert doc["deployments"], "no deployments"
    for dep in doc["deployments"]:
        path, func = dep["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, func)
        assert Path(path).stem == func == flow.name, "file stem = function = flow name (STYLE #3)"
        params = dep.get("parameters", {})
        sig = inspect.signature(flow.fn)
        assert set(params) <= set(sig.parameters), f"{dep['name']}: unknown parameters"
        # Prefect validates parameters against the flow signature before a run is created
        flow.validate_parameters(params)


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
