"""Retry policy shared by the task adapters: retry I/O failures, never bad input."""

from __future__ import annotations

from typing import Any

from quant_core.errors import QonlineError

#: seconds between attempts: 1, 4, 15
IO_RETRY_DELAYS: list[float] = [1.0, 4.0, 15.0]


def retry_on_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry when the failure was I/O (network, storage); a domain error is final."""
    try:
        state.result()
    except QonlineError as exc:
        # a LakeError wrapping an OSError (endpoint down, throttled) is worth another attempt
        return isinstance(exc.__cause__, OSError | TimeoutError | ConnectionError)
    except (OSError, TimeoutError, ConnectionError):
        return True
    except Exception:
        return False
    return False


def writer_id() -> str:
    """Who writes to the lake, for its history: the current flow run (name and id), else host and pid."""
    from prefect.runtime import flow_run

    from quant_core.data.lake import default_writer

    run_id = flow_run.id
    return f"flow run {flow_run.name} ({run_id})" if run_id else default_writer()
