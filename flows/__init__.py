"""Prefect flows of qonline, one per file, named after its job; and the CLI."""

from quant_core.runtime_env import apply_process_environment

apply_process_environment()
