#!/usr/bin/env bash
# Create the local process work pool the deployments in prefect.yaml use (idempotent).
set -euo pipefail
pool="${1:-intermission-local}"
prefect work-pool inspect "$pool" >/dev/null 2>&1 || prefect work-pool create "$pool" --type process
