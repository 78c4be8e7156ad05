#!/usr/bin/env bash
# Start the demo (no `ros2` CLI needed): python -m cotracker3_ros.tools.demo [args...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck disable=SC1091
source scripts/env.sh
exec python -m cotracker3_ros.tools.demo "$@"
