"""The run-directory contract, re-exported from :mod:`replicate.runs` (torch-free, so that
planning and collection read run directories without importing the engine)."""
from ..runs import (TERMINAL_STATUSES, Run, RunFileError, atomic_write_json,  # noqa: F401
                    failure_reason, file_mode, read_record, record_problem, replace_run,
                    run_state)

__all__ = ["Run", "RunFileError", "TERMINAL_STATUSES", "atomic_write_json", "failure_reason",
           "file_mode", "read_record", "record_problem", "replace_run", "run_state"]
