#!/usr/bin/env bash
# The ROS 2 Jazzy leg of `make test` (and so of .ci/run): install Jazzy from PyPI wheels into its own
# venv and workspace (.venv-jazzy + build/ws-jazzy, beside Kilted's .venv + build/ws), then run the
# tests that exercise ROS 2 itself against it: the messages over Fast DDS, the node as its own process
# over Fast DDS, the message conversions. The rest of the suite (model, training, evaluation, bags)
# does not depend on the distro and runs once, in the Kilted leg.
#
#   bash scripts/test_jazzy.sh          (or: make test-jazzy)
#   bash scripts/test_jazzy.sh -x       extra arguments go to pytest
#   JAZZY=0 make test                   skips this leg locally; .ci/run never sets JAZZY
#
# About 1 minute of tests on 2 cores, plus the install (first time about 4 minutes, then about 1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The leg's tests: every test file that imports rclpy or the built cotracker3_msgs and needs no
# Kilted-only tool. Add a file here when it starts to depend on the distro.
JAZZY_TESTS=(test/test_msgs_dds.py test/test_ros_node.py test/test_node_faults.py test/test_ros_conversions.py
             test/test_node_depth.py test/test_ros_depth.py)

# Jazzy's own install, whatever the calling shell has: VENV/WS_DIR would name Kilted's install, and a
# shell that sourced scripts/env.sh carries Kilted's ament/colcon/Python paths.
unset VENV WS_DIR VIRTUAL_ENV PYTHONPATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH
export ROS_DISTRO=jazzy

echo "[test] === ROS 2 Jazzy leg: install, then ${JAZZY_TESTS[*]} ==="
bash scripts/install.sh
# test.sh prints the rclpy it runs, counts pytest's "no tests collected" (exit 5) as a failure and
# returns pytest's status. Lint is left to the main leg (LINT=0): it does not depend on the distro.
LINT=0 exec bash scripts/test.sh "${JAZZY_TESTS[@]}" "$@"
