"""Process environment every qonline process runs with (STACK.md "Environment for every process").

These turn off telemetry and slow start-up paths of the libraries we embed. They are *written*
(``setdefault``) here, never read: reading the environment is :mod:`quant_core.settings`' job.
"""

from __future__ import annotations

import os

PROCESS_ENVIRONMENT: dict[str, str] = {
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Prefect's ephemeral server takes 19-21 s to start here, over its default 20 s timeout.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # quant_core logs show in the Prefect UI through the run logger's handlers.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "quant_core",
    # quant_core also runs outside flow runs (CLI helpers, tests): no warning per log record
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    # an unreachable tracking server should fail in seconds, not after minutes of retries
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


def apply_process_environment() -> None:
    """Set the telemetry-off and start-up variables unless the caller already chose a value."""
    for key, value in PROCESS_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
