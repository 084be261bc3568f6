#!/usr/bin/env bash
# Quickstart, step 2: set everything up and run the whole test suite (lint, types, tests).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

echo "== ruff" >&2
.venv/bin/ruff check .
echo "== mypy (strict on quant_core)" >&2
.venv/bin/mypy quant_core tasks flows
# the Prefect deployment test also runs on PostgreSQL when one answers (these machines have one on 5432)
if [ -z "${QONLINE_TEST_PREFECT_DB:-}" ]; then
  pg="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
  if .venv/bin/python - "$pg" >/dev/null 2>&1 <<'PY'
import asyncio, sys
import asyncpg
async def main() -> None:
    conn = await asyncio.wait_for(asyncpg.connect(sys.argv[1].replace("+asyncpg", "")), 5)
    await conn.close()
asyncio.run(main())
PY
  then
    export QONLINE_TEST_PREFECT_DB="$pg"
    echo "== PostgreSQL answers on 127.0.0.1:5432: the deployment test runs on SQLite and on PostgreSQL" >&2
  fi
fi
# the report's browser test renders report.html in Debian's headless chromium: install it when it is
# missing and apt-get can (root); otherwise that one test skips and says why -- never fail the run here
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "== installing Debian's chromium for tests/integration/test_report_browser.py" >&2
  if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 ||
         { apt-get update -q >/dev/null 2>&1 &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }; }; then
    echo "   chromium could not be installed: the browser test will skip" >&2
  fi
fi
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
