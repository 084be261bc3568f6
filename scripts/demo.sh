#!/usr/bin/env bash
# Quickstart, step 1: set everything up and run the main job on the embedded defaults.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec .venv/bin/qonline demo "$@"
