"""Static checks of the Docker stack: docker/compose.yaml, docker/Dockerfile, docker/.env.example.

No Docker engine runs on the development machines, so the stack is never started here. Instead these
tests hold the files against what the code really reads: the fields of ``quant_core.settings.Settings``
(the worker's environment is fed through ``load_settings``), the work pool of
``deployments/prefect.yaml``, the packages pyproject ships. Each checker returns a list of problems;
the ``*_reports_*`` tests break a copy of the compose file and make sure the checkers notice.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, get_args
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices, SecretStr

from quant_core.runtime_env import PROCESS_ENVIRONMENT
from quant_core.settings import Settings, load_settings
from tests.conftest import REPO_ROOT

DOCKER = REPO_ROOT / "docker"
Compose = dict[str, Any]

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, $VAR; $$ is a literal $
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY($|_)", re.IGNORECASE)
_URL_HOST = re.compile(r"\b(?:https?|redis|rediss|postgresql(?:\+\w+)?)://(?:[^@/\s\"']*@)?([A-Za-z0-9_.-]+)")


# -- reading the files ------------------------------------------------------------------------------
def load_compose() -> Compose:
    doc = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), "compose.yaml has no services"
    return doc


def load_env_example() -> tuple[dict[str, str], list[str]]:
    """``docker/.env.example`` as ``{name: value}`` and its raw lines."""
    lines = (DOCKER / ".env.example").read_text(encoding="utf-8").splitlines()
    values: dict[str, str] = {}
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), f".env.example: bad line {line!r}"
            values[name] = value
    return values, lines


def interpolate(text: str, env: dict[str, str], *, strict: bool = True) -> str:
    """Compose's variable interpolation of one string, with ``env`` as the .env file.

    ``strict``: a missing ``${VAR:?...}`` raises, as compose stops; otherwise it becomes empty.
    """

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op") or "", m.group("arg") or ""
        value = env.get(name)
        unset_or_empty = not value if op.startswith(":") else value is None
        if op.endswith("-"):
            return arg if unset_or_empty else str(value)
        if op.endswith("?"):
            if unset_or_empty and strict:
                raise KeyError(f"{name}: {arg}")
            return str(value)
        if op.endswith("+"):
            return "" if unset_or_empty else arg
        return value or ""

    return _INTERPOLATION.sub(one, text)


def referenced_vars(text: str) -> set[str]:
    """Names of the compose (.env) variables a string refers to (``$$NAME`` is the container's own)."""
    return {m.group("braced") or m.group("bare") for m in _INTERPOLATION.finditer(text) if m.group(0) != "$$"}


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command_text(svc: dict[str, Any]) -> str:
    parts = []
    for key in ("entrypoint", "command"):
        value = svc.get(key)
        parts.append(" ".join(value) if isinstance(value, list) else str(value or ""))
    return " ".join(parts).strip()


def depends_on(svc: dict[str, Any]) -> dict[str, str]:
    """``{service: condition}``; the short list form means ``service_started``."""
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def is_one_shot(svc: dict[str, Any]) -> bool:
    return str(svc.get("restart", "no")) == "no"


def option(text: str, name: str) -> str | None:
    m = re.search(rf"{name}[=\s]+[\"']?([^\s\"';]+)", text)
    return m.group(1) if m else None


def work_pools() -> set[str]:
    doc = yaml.safe_load((REPO_ROOT / "deployments/prefect.yaml").read_text(encoding="utf-8"))
    return {dep["work_pool"]["name"] for dep in doc["deployments"] if dep.get("work_pool")}


_PREFIX = str(Settings.model_config.get("env_prefix", "")).upper()


def field_env_names(name: str) -> set[str]:
    """The environment variables a settings field reads: prefix + name, or its validation aliases."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return {choice.upper() for choice in alias.choices if isinstance(choice, str)}
    if isinstance(alias, str):
        return {alias.upper()}
    return {f"{_PREFIX}{name}".upper()}


def settings_env_names() -> set[str]:
    """Every ``QONLINE_*`` variable the settings object reads."""
    return {var for name in Settings.model_fields for var in field_env_names(name) if var.startswith(_PREFIX)}


def secret_settings() -> dict[str, set[str]]:
    """``{field: env names}`` of the settings that hold secrets (``SecretStr`` fields)."""
    return {name: field_env_names(name) for name, info in Settings.model_fields.items()
            if info.annotation is SecretStr or SecretStr in get_args(info.annotation)}


def templated_qonline_vars() -> set[str]:
    """``QONLINE_*`` variables that deployments/prefect.yaml itself templates (``{{ $QONLINE_HOME }}``)."""
    text = (REPO_ROOT / "deployments/prefect.yaml").read_text(encoding="utf-8")
    return set(re.findall(r"\{\{\s*\$(QONLINE_\w+)\s*\}\}", text))


@dataclass
class Stage:
    name: str
    parent: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def dockerfile_stages() -> dict[str, Stage]:
    """The Dockerfile's stages in order, each with its (INSTRUCTION, arguments) after line joining."""
    logical: list[str] = []
    pending = ""
    for raw in (DOCKER / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # also inside a continued instruction, as Docker does
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else f"stage{len(stages)}"
            current = stages[name] = Stage(name, words[0])
        elif current is not None:
            current.instructions.append((instr, args.strip()))
    return stages


def stage_chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    chain = [stages[name]]
    while chain[-1].parent in stages:
        chain.append(stages[chain[-1].parent])
    return chain


def dockerfile_env(stages: dict[str, Stage], name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for stage in reversed(stage_chain(stages, name)):
        for instr, args in stage.instructions:
            if instr == "ENV":
                env.update(dict(pair.split("=", 1) for pair in args.split()))
    return env


def effective_user(stages: dict[str, Stage], name: str) -> str:
    for stage in stage_chain(stages, name):
        users = [args for instr, args in stage.instructions if instr == "USER"]
        if users:
            return users[-1]
    return "root"


def package_roots() -> set[str]:
    """Top-level packages of pyproject's ``[tool.setuptools.packages.find] include``."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return {pattern.rstrip("*").split(".")[0] for pattern in include}


# -- checkers: each returns the problems it found ----------------------------------------------------
def check_services(doc: Compose) -> list[str]:
    services: dict[str, dict[str, Any]] = doc["services"]
    stages = dockerfile_stages()
    problems = []
    for name, svc in services.items():
        build = svc.get("build")
        if not svc.get("image") and not build:
            problems.append(f"{name}: neither image nor build")
        if build:
            build = {"context": build} if isinstance(build, str) else build
            context = (DOCKER / build.get("context", ".")).resolve()
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                problems.append(f"{name}: build names a Dockerfile that does not exist")
            if build.get("target") and build["target"] not in stages:
                problems.append(f"{name}: build target {build['target']!r} is no stage of docker/Dockerfile")
        # every service but the database (whose image starts its server by itself) says what it runs
        if not command_text(svc) and name != "postgres":
            problems.append(f"{name}: no command")
        if is_one_shot(svc):
            continue
        test = (svc.get("healthcheck") or {}).get("test")
        if not test or test == ["NONE"] or (svc.get("healthcheck") or {}).get("disable"):
            problems.append(f"{name}: long-running service without a healthcheck")
    return problems


def check_dependencies(doc: Compose) -> list[str]:
    """depends_on names exist, conditions fit, and every service a container talks to is waited for."""
    services: dict[str, dict[str, Any]] = doc["services"]
    problems = []
    for name, svc in services.items():
        for dep, condition in depends_on(svc).items():
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep!r}")
            elif condition == "service_healthy" and not (services[dep].get("healthcheck") or {}).get("test"):
                problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
            elif condition == "service_completed_successfully" and not is_one_shot(services[dep]):
                problems.append(f"{name}: waits for {dep} to complete, but {dep} restarts (not a one-shot job)")

    def ready_before(name: str, target: str, seen: frozenset[str] = frozenset()) -> bool:
        """``target`` is healthy before ``name`` starts (directly, or through a job that waited for it)."""
        for dep, condition in depends_on(services.get(name, {})).items():
            if dep == target and condition == "service_healthy":
                return True
            if dep in services and dep not in seen and condition != "service_started" \
                    and ready_before(dep, target, seen | {name}):
                return True
        return False

    values, _ = load_env_example()
    for name, svc in services.items():
        texts = [interpolate(t, values, strict=False) for t in (*environment(svc).values(), command_text(svc))]
        hosts = {h for text in texts for h in _URL_HOST.findall(text)}
        hosts |= {v for k, v in environment(svc).items() if k.endswith("DATABASE_HOST")}
        for host in sorted(hosts & set(services) - {name}):
            if not ready_before(name, host):
                problems.append(f"{name}: talks to {host} but does not wait for it to be healthy")
    return problems


def check_qonline_environment(doc: Compose) -> list[str]:
    """Every QONLINE_* variable a container or the image gets is one the code reads."""
    known = settings_env_names() | templated_qonline_vars()
    given: dict[str, str] = {}
    for name, svc in doc["services"].items():
        given |= {var: f"service {name}" for var in environment(svc) if var.upper().startswith("QONLINE_")}
    for stage in dockerfile_stages():
        given |= {var: f"Dockerfile stage {stage}" for var in dockerfile_env(dockerfile_stages(), stage)
                  if var.upper().startswith("QONLINE_")}
    return [f"{where}: {var} is no qonline setting (quant_core.settings.Settings)"
            for var, where in sorted(given.items()) if var.upper() not in known]


def check_secrets_from_env_file(doc: Compose) -> list[str]:
    """A secret in compose is a ${VAR} from the .env file: no literal, no built-in fallback value."""
    secret_env = set().union(*secret_settings().values())
    problems = []
    for name, svc in doc["services"].items():
        for var, raw in environment(svc).items():
            if not (_SECRET_NAME.search(var) or var.upper() in secret_env):
                continue
            refs = list(_INTERPOLATION.finditer(raw))
            if not any(m.group(0) != "$$" for m in refs):
                problems.append(f"{name}: {var} is a literal, not a variable from docker/.env")
            if any((m.group("op") or "").endswith("-") for m in refs):
                problems.append(f"{name}: {var} falls back to a built-in value when docker/.env lacks it")
    return problems


def redis_password_var(doc: Compose) -> tuple[str | None, list[str]]:
    """The .env variable behind the Redis server's requirepass, and problems with how it is used."""
    redis = doc["services"].get("redis", {})
    cmd = command_text(redis)
    m = re.search(r"--requirepass[=\s]+[\"']?(\$\$?\{?[A-Za-z_][A-Za-z0-9_]*(?:[:?+-][^}]*)?\}?)", cmd)
    if not m:
        return None, ["redis: no --requirepass in its command"]
    ref = m.group(1)
    problems = []
    if ref.startswith("$$"):  # the container's own variable, set from .env in its environment
        container_var = ref.strip("${}")
        names = referenced_vars(environment(redis).get(container_var, ""))
        check = (redis.get("healthcheck") or {}).get("test") or []
        if container_var not in " ".join(check):
            problems.append("redis: the healthcheck does not authenticate with the password")
    else:
        names = referenced_vars(ref)
    if len(names) != 1:
        return None, [*problems, "redis: requirepass is not one variable from docker/.env"]
    return names.pop(), problems


def check_redis_password(doc: Compose) -> list[str]:
    var, problems = redis_password_var(doc)
    url = environment(doc["services"].get("worker", {})).get("QONLINE_REDIS_URL", "")
    # the raw value: compose's ${VAR:?message} may hold characters that confuse a URL parser
    m = re.match(r"rediss?://[^:@/]*:(\$\{[^}]*\}|\$\w+|[^@]*)@", url)
    if not m or not m.group(1):
        return [*problems, "worker: QONLINE_REDIS_URL carries no password"]
    if var is not None and referenced_vars(m.group(1)) != {var}:
        problems.append(f"worker: the password in QONLINE_REDIS_URL is not ${{{var}}}, the one Redis requires")
    return problems


def check_work_pool(doc: Compose) -> list[str]:
    pools = work_pools()
    if len(pools) != 1:
        return [f"deployments/prefect.yaml names {len(pools)} work pools; the stack runs one worker"]
    (pool,) = pools
    services = doc["services"]
    problems = []
    worker = command_text(services.get("worker", {}))
    if "worker start" not in worker or option(worker, "--pool") != pool:
        problems.append(f"worker: does not start a worker for pool {pool!r} ({worker!r})")
    deploy = [name for name, svc in services.items() if "deploy" in command_text(svc) and is_one_shot(svc)]
    if not deploy:
        problems.append("no one-shot job runs `prefect deploy`")
    for name in deploy:
        text = command_text(services[name])
        if not re.search(rf"work-pool create\s+[\"']?{re.escape(pool)}\b", text):
            problems.append(f"{name}: does not create work pool {pool!r}")
        if "--all" not in text or "--prefect-file deployments/prefect.yaml" not in text:
            problems.append(f"{name}: does not deploy --all from deployments/prefect.yaml")
    return problems


def check_env_example(doc: Compose) -> list[str]:
    values, lines = load_env_example()
    used = {var for text in strings(doc) for var in referenced_vars(text)}
    problems = [f"compose uses ${{{v}}}, missing from .env.example" for v in sorted(used - set(values))]
    problems += [f".env.example documents {v}, which compose never uses" for v in sorted(set(values) - used)]
    # each variable sits in a block (lines between blank lines) that has a comment explaining it
    block: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            block.append(line)
            continue
        if block and not any(b.lstrip().startswith("#") for b in block):
            problems += [f".env.example: {b.partition('=')[0]} has no comment" for b in block]
        block = []
    for name, value in values.items():
        if _SECRET_NAME.search(name) and value and not value.startswith("change-me"):
            problems.append(f".env.example: {name} is not a change-me placeholder")
        if re.search(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b", value) or re.search(r"-----BEGIN", value):
            problems.append(f".env.example: {name} looks like a real credential")
        for run in re.findall(r"[A-Za-z0-9+/=_]{20,}", value):
            if re.search(r"\d", run) and re.search(r"[A-Za-z]", run):
                problems.append(f".env.example: {name} holds a long random-looking value")
    return problems


def compose_env(doc: Compose, service: str) -> dict[str, str]:
    """A service's environment as the container would see it with .env.example as docker/.env."""
    values, _ = load_env_example()
    return {var: interpolate(raw, values) for var, raw in environment(doc["services"][service]).items()}


# -- tests --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> Compose:
    return load_compose()


@pytest.mark.parametrize("checker", [check_services, check_dependencies, check_qonline_environment,
                                     check_secrets_from_env_file, check_redis_password, check_work_pool,
                                     check_env_example], ids=lambda f: f.__name__)
def test_compose_file(compose: Compose, checker: Callable[[Compose], list[str]]) -> None:
    assert checker(compose) == []


def test_worker_environment_configures_the_real_settings(compose: Compose, monkeypatch: pytest.MonkeyPatch) -> None:
    """Feed the worker's environment to load_settings: lake on S3 (MinIO), Redis with its password, MLflow."""
    for var in list(os.environ):
        if var.startswith(("QONLINE_", "AWS_")):
            monkeypatch.delenv(var)
    env = compose_env(compose, "worker")
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    settings = load_settings()
    services = compose["services"]

    assert not settings.lake_is_local and settings.lake_uri.startswith("s3://")
    bucket = urlsplit(settings.lake_uri).netloc
    init = compose_env(compose, "minio-init")
    assert bucket == init["S3_BUCKET"], "the lake's bucket is the one minio-init creates"
    endpoint = urlsplit(settings.s3.endpoint_url or "")
    assert endpoint.scheme == "http" and endpoint.hostname == "minio" and endpoint.port == 9000
    assert settings.s3.access_key_id is not None and settings.s3.secret_access_key is not None
    assert settings.s3.access_key_id.get_secret_value() == init["S3_ACCESS_KEY"]
    assert settings.s3.secret_access_key.get_secret_value() == init["S3_SECRET_KEY"]

    assert settings.redis_url is not None
    redis_url = urlsplit(settings.redis_url.get_secret_value())
    assert redis_url.hostname in services and redis_url.port == 6379
    assert redis_url.password == compose_env(compose, "redis")["REDIS_PASSWORD"]

    tracking = urlsplit(settings.resolved_mlflow_tracking_uri)
    assert tracking.scheme == "http" and tracking.hostname == "mlflow"
    assert option(command_text(services["mlflow"]), "--port") == str(tracking.port)
    assert settings.mlflow_artifact_uri is None, "artifacts go through the tracking server's proxy"
    # nothing secret shows when the settings are printed or logged
    assert init["S3_SECRET_KEY"] not in repr(settings) and redis_url.password not in str(settings.redacted())


def test_databases_match_between_postgres_prefect_and_mlflow(compose: Compose) -> None:
    pg = compose_env(compose, "postgres")
    prefect = compose_env(compose, "prefect-server")
    assert prefect["PREFECT_SERVER_DATABASE_DRIVER"] == "postgresql+asyncpg"
    assert prefect["PREFECT_SERVER_DATABASE_HOST"] == "postgres"
    assert (prefect["PREFECT_SERVER_DATABASE_USER"], prefect["PREFECT_SERVER_DATABASE_NAME"],
            prefect["PREFECT_SERVER_DATABASE_PASSWORD"]) == (pg["PREFECT_DB_USER"], pg["PREFECT_DB_NAME"],
                                                             pg["PREFECT_DB_PASSWORD"])
    store = urlsplit(compose_env(compose, "mlflow")["MLFLOW_BACKEND_STORE_URI"])
    assert store.scheme == "postgresql" and store.hostname == "postgres"
    assert (store.username, store.path.lstrip("/"), store.password) == (pg["MLFLOW_DB_USER"], pg["MLFLOW_DB_NAME"],
                                                                        pg["MLFLOW_DB_PASSWORD"])
    assert pg["PREFECT_DB_NAME"] != pg["MLFLOW_DB_NAME"]
    # the init script that creates both is mounted and reads exactly those variables
    mounts = [v for v in compose["services"]["postgres"].get("volumes", []) if "docker-entrypoint-initdb.d" in v]
    assert mounts, "no init script mounted into /docker-entrypoint-initdb.d"
    script = (DOCKER / mounts[0].split(":")[0]).read_text(encoding="utf-8")
    for var in ("PREFECT_DB_USER", "PREFECT_DB_PASSWORD", "PREFECT_DB_NAME", "MLFLOW_DB_USER",
                "MLFLOW_DB_PASSWORD", "MLFLOW_DB_NAME"):
        assert f"${{{var}" in script, f"postgres-init.sh does not use {var}"
    # MLflow's artifacts: in the bucket minio-init creates, on MinIO's endpoint, with the key it creates
    values, _ = load_env_example()
    mlflow_cmd = interpolate(command_text(compose["services"]["mlflow"]), values)
    init = compose_env(compose, "minio-init")
    assert option(mlflow_cmd, "--artifacts-destination") == f"s3://{init['S3_BUCKET']}/mlflow"
    mlflow = compose_env(compose, "mlflow")
    assert mlflow["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert (mlflow["AWS_ACCESS_KEY_ID"], mlflow["AWS_SECRET_ACCESS_KEY"]) == (init["S3_ACCESS_KEY"], init["S3_SECRET_KEY"])


def test_dockerfile_image(compose: Compose) -> None:
    stages = dockerfile_stages()
    final = list(stages)[-1]
    targets = {(svc.get("build") or {}).get("target") or final for svc in compose["services"].values()
               if isinstance(svc.get("build"), dict)}
    assert compose["services"]["worker"]["build"].get("target", final) == final, \
        "the worker runs the default (last) stage"
    for target in targets | {final}:
        user = effective_user(stages, target)
        assert user.split(":")[0] not in ("root", "0"), f"stage {target} runs as {user}"

    runs = {name: " ".join(a for i, a in stage.instructions if i == "RUN") for name, stage in stages.items()}
    for name, text in runs.items():
        for install in re.findall(r"pip install[^&;]*", text):
            assert re.search(r"-c\s+\S*requirements\.lock\b", install), f"{name}: unpinned {install!r}"
            assert "compileall" in text, f"{name}: installs packages without compiling their bytecode"
    assert re.search(r"pip install\s+-c\s+requirements\.lock\s+\.(\s|$)", runs[final]), \
        "the qonline stage installs the project with `pip install -c requirements.lock .`"

    copied = {word.rstrip("/") for i, args in stages[final].instructions if i == "COPY"
              for word in args.split()[:-1] if not word.startswith("--")}
    assert package_roots() <= copied, f"packages not copied: {package_roots() - copied}"
    allowed = {line[1:].strip().rstrip("/") for line in
               (DOCKER / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines() if line.startswith("!")}
    assert copied <= allowed, f"copied but excluded from the build context: {copied - allowed}"

    env = dockerfile_env(stages, final)
    telemetry = {k: v for k, v in PROCESS_ENVIRONMENT.items() if re.search("ANALYTICS|TELEMETRY|TRACK", k)}
    assert telemetry and all(env.get(k) == v for k, v in telemetry.items()), "telemetry is not off in the image"
    assert "PYTHONDONTWRITEBYTECODE" not in env
    secrets = set().union(*secret_settings().values())
    for name, stage in stages.items():
        for instr, args in stage.instructions:
            if instr in ("ENV", "ARG"):
                names = [pair.split("=", 1)[0] for pair in args.split()]
                assert not [n for n in names if _SECRET_NAME.search(n) or n.upper() in secrets], \
                    f"{name}: a secret is baked into the image ({instr} {args})"


def test_no_secret_reaches_deployment_parameters() -> None:
    doc = yaml.safe_load((REPO_ROOT / "deployments/prefect.yaml").read_text(encoding="utf-8"))
    secret_fields = secret_settings()
    secret_env = set().union(*secret_fields.values())
    for dep in doc["deployments"]:
        params = set(dep.get("parameters") or {})
        assert not params & set(secret_fields), f"{dep['name']}: secret setting as a parameter"
        job_env = ((dep.get("work_pool") or {}).get("job_variables") or {}).get("env") or {}
        assert not {k for k in job_env if k.upper() in secret_env or _SECRET_NAME.search(k)}, dep["name"]


# -- the checkers catch a broken file --------------------------------------------------------------------
def _broken(compose: Compose, edit: Callable[[Compose], None]) -> Compose:
    doc = copy.deepcopy(compose)
    edit(doc)
    return doc


def _set_worker_env(var: str, value: str | None) -> Callable[[Compose], None]:
    def edit(doc: Compose) -> None:
        env = doc["services"]["worker"]["environment"]
        if value is None:
            env.pop(var)
        else:
            env[var] = value
    return edit


@pytest.mark.parametrize(("checker", "edit"), [
    (check_qonline_environment, _set_worker_env("QONLINE_REDIS_PASSWORD", "${REDIS_PASSWORD}")),
    (check_redis_password, _set_worker_env("QONLINE_REDIS_URL", "redis://:${MINIO_ROOT_PASSWORD}@redis:6379/0")),
    (check_redis_password, _set_worker_env("QONLINE_REDIS_URL", "redis://redis:6379/0")),
    (check_secrets_from_env_file, _set_worker_env("QONLINE_AWS_SECRET_ACCESS_KEY", "${S3_SECRET_KEY:-minio123}")),
    (check_env_example, _set_worker_env("QONLINE_EXCHANGE", "${QONLINE_CALENDAR}")),
    (check_work_pool, lambda doc: doc["services"]["worker"].update(command="prefect worker start --pool other")),
    (check_dependencies, lambda doc: doc["services"]["worker"]["depends_on"].update(nosuch={})),
    (check_dependencies, lambda doc: doc["services"]["worker"]["depends_on"].pop("mlflow")),
    (check_services, lambda doc: doc["services"]["redis"].pop("healthcheck")),
    (check_services, lambda doc: doc["services"]["mlflow"].pop("command")),
], ids=["unknown-setting", "other-redis-password", "no-redis-password", "secret-fallback", "undocumented-var",
        "wrong-pool", "unknown-dependency", "unwaited-mlflow", "no-healthcheck", "no-command"])
def test_checkers_report_a_broken_compose_file(compose: Compose, checker: Callable[[Compose], list[str]],
                                               edit: Callable[[Compose], None]) -> None:
    assert checker(_broken(compose, edit)), f"{checker.__name__} missed the break"
