#!/usr/bin/env bash
# Lint (ruff) and test (pytest) in the installed environment (run `make install` / scripts/install.sh first).
#
#   bash scripts/test.sh                 # ruff check ., then pytest on test/ (both always run)
#   bash scripts/test.sh -k dds -x       # extra arguments go to pytest (test/ is still the target
#                                        # unless you name paths yourself)
#   ROS_DISTRO=jazzy bash scripts/test.sh ...   # in the Jazzy install (scripts/env.sh picks it)
#   LINT=0 bash scripts/test.sh ...      # pytest only (the Jazzy leg of scripts/test_jazzy.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck disable=SC1091
source scripts/env.sh

# Which ROS 2 this run tests: the distro env.sh chose, and the rclpy and RMW that really import.
python - <<'PY'
import importlib.metadata as md
import os

from rclpy.utilities import get_rmw_implementation_identifier

rclpy_version = md.version("ros-rclpy")
print(f"[test] ROS 2 {os.environ['ROS_DISTRO']}: rclpy {rclpy_version}, {get_rmw_implementation_identifier()},",
      os.environ["VIRTUAL_ENV"])
PY

# Lint first, but run the tests even when it fails, so one run reports both; either fails the script.
lint_rc=0
if [[ ${LINT:-1} != 0 ]]; then
    ruff check . || lint_rc=$?
fi
if [[ $lint_rc != 0 ]]; then
    echo "scripts/test.sh: ruff check failed (above); running the tests anyway, the run will fail" >&2
fi

# `python -m pytest` puts the repo root first on sys.path: tests import the working tree.
has_path=0
for arg in "$@"; do
    [[ $arg != -* && -e ${arg%%::*} ]] && has_path=1
done
targets=()
[[ $has_path == 0 ]] && targets=(test)

rc=0
python -m pytest -q -p no:cacheprovider "$@" "${targets[@]}" || rc=$?
if [[ $rc == 5 ]]; then
    echo "scripts/test.sh: pytest collected no tests; counting that as a failure" >&2
    exit 1
fi
if [[ $rc == 0 && $lint_rc != 0 ]]; then rc=$lint_rc; fi
exit "$rc"
