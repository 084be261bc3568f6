#!/usr/bin/env bash
# Quickstart, step 2: set everything up and run the whole test suite (lint, types, tests).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

echo "== ruff" >&2
.venv/bin/ruff check .
echo "== mypy (strict on quant_core)" >&2
.venv/bin/mypy quant_core tasks flows
echo "== pytest" >&2
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
