#!/usr/bin/env bash
# One-command install of cotracker3_ros from PyPI wheels, no system ROS needed.
#
#   bash scripts/install.sh          (or: make install)
#   source scripts/env.sh            (then: python -c "import cotracker3_ros, cotracker3_msgs.msg")
#
# ROS 2 distro: ROS_DISTRO=kilted (default) or ROS_DISTRO=jazzy. Each distro gets its own venv and
# workspace, so both can live side by side:
#   kilted: .venv        + build/ws        from requirements.txt
#   jazzy:  .venv-jazzy  + build/ws-jazzy  from requirements-jazzy.txt
#   ROS_DISTRO=jazzy bash scripts/install.sh && ROS_DISTRO=jazzy source scripts/env.sh
# Both files include requirements-common.txt (numpy, opencv, colcon, pytest, ...) and add their
# distro's ROS 2 wheels. Any other ROS_DISTRO (a sourced system ROS 2's) installs kilted.
#
# Steps, each safe to repeat:
#   1. create the venv ($VENV, default <repo>/.venv) if it is missing;
#   2. pip install torch==2.13.0 first (pinned: an unpinned torch pulls the multi-GB CUDA build),
#      then the distro's requirements file (ROS 2 wheels, interface-build wheels, colcon, tools);
#   3. link the two /opt include paths that the std_msgs wheel's CMake target names (see
#      ../shared/ros2/README.md: CMake's generate step fails on them otherwise);
#   4. colcon build the interface package (msg/, cotracker3_msgs) and the node package
#      (repo root, cotracker3_ros) into $WS_DIR (default <repo>/build/ws, build/ws-jazzy for jazzy);
#   5. check that the three Python packages import from a shell that sourced scripts/env.sh.
#
# Overrides (environment): ROS_DISTRO, VENV, WS_DIR, PYTHON (interpreter that creates the venv,
# default python3).
# Users with a system ROS 2 (apt) do not need this script: put the repo and msg/ in a colcon
# workspace and build it as usual.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# ROS 2 distro of the wheels. Another value (a sourced system ROS 2 exports ROS_DISTRO=humble, ...)
# falls back to kilted, with a warning, as this script did before it had a switch.
ROS_DISTRO=${ROS_DISTRO:-kilted}
if [[ $ROS_DISTRO != kilted && $ROS_DISTRO != jazzy ]]; then
    echo "[install] warning: ROS_DISTRO=$ROS_DISTRO has no PyPI wheels here (kilted or jazzy); installing kilted" >&2
    ROS_DISTRO=kilted
fi
# Per distro: requirements file, default venv and workspace, and the rclpy release series it
# installs (to refuse a venv that already holds another distro: pip would silently swap its wheels).
case $ROS_DISTRO in
    kilted) REQUIREMENTS=requirements.txt       suffix=""       rclpy_series=9. ;;
    jazzy)  REQUIREMENTS=requirements-jazzy.txt suffix="-jazzy" rclpy_series=7. ;;
esac
VENV=${VENV:-$REPO_ROOT/.venv$suffix}
WS_DIR=${WS_DIR:-$REPO_ROOT/build/ws$suffix}
PYTHON=${PYTHON:-python3}
TORCH_SPEC="torch==2.13.0"

log() { printf '[install] %s\n' "$*"; }
elapsed() { echo "$((SECONDS - $1)) s"; }

cd "$REPO_ROOT"
t_total=$SECONDS
log "ROS 2 $ROS_DISTRO: venv $VENV, workspace $WS_DIR"

# The ROS wheels re-execute python once with LD_LIBRARY_PATH set and mark that with this variable;
# inherited from another venv's process it would stop that re-exec here.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

# --- 1. venv -----------------------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
"$VPY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' || {
    echo "[install] the ROS 2 wheels are built for CPython 3.11; $VPY is not 3.11" >&2
    exit 1
}

# --- 2. Python packages -----------------------------------------------------------------------
t=$SECONDS
pip_install() {
    # This machine's pip.conf names local indexes that lack most packages; pip warns for each one.
    "$VPY" -m pip install --disable-pip-version-check --no-input -q "$@" 2>&1 \
        | { grep -v "^WARNING: Location 'file:.*' is ignored" || true; }
}
# The plain ros-rclpy wheel is in every distro's venv (Jazzy's ros-jazzy-rclpy only pins it).
have_rclpy=$("$VPY" -c 'import importlib.metadata as m; print(m.version("ros-rclpy"))' 2>/dev/null || true)
if [[ -n "$have_rclpy" && "$have_rclpy" != "$rclpy_series"* ]]; then
    echo "[install] $VENV holds rclpy $have_rclpy, not ROS 2 $ROS_DISTRO's (${rclpy_series}x):" >&2
    echo "  give each distro its own venv (VENV=..., or leave VENV unset for the default)" >&2
    exit 1
fi
have_torch=$("$VPY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)
if [[ "$have_torch" != 2.13.0* ]]; then
    log "installing $TORCH_SPEC (found: ${have_torch:-none})"
    pip_install "$TORCH_SPEC"
fi
log "installing $REQUIREMENTS"
# The constraint keeps any requirement from moving torch off its pin.
pip_install -r "$REQUIREMENTS" -c <(echo "$TORCH_SPEC")
# ros-rosidl-parser (Kilted's and Jazzy's) asks for lark-parser 0.12, which installs the same `lark`
# module as lark 1.x; whichever pip unpacked last wins. Make sure it is the pinned lark.
lark_pin=$(sed -n 's/^lark==//p' requirements-common.txt)
if [[ $("$VPY" -c 'import lark; print(lark.__version__)') != "$lark_pin" ]]; then
    log "restoring lark==$lark_pin over lark-parser's copy"
    pip_install --force-reinstall --no-deps "lark==$lark_pin"
fi
log "pip done in $(elapsed "$t")"

# --- 3. include paths the std_msgs wheel's CMake target names --------------------------------
# The wheels were built in a manylinux image whose Python lived under /opt/python/cp311-cp311;
# their exported CMake targets still name its include folders, and CMake refuses non-existent
# ones. Point them at this venv's Python headers and numpy headers (only where missing). Kilted's and
# Jazzy's wheels name the same two paths (both were built with numpy 2), so one pair of links serves both.
read -r py_include np_include < <("$VPY" -c \
    'import sysconfig, numpy; print(sysconfig.get_paths()["include"], numpy.get_include())')
link_if_missing() {  # <link path> <target>
    local link=$1 target=$2
    [[ -e "$link" ]] && return 0      # exists (a dangling link counts as missing)
    log "linking $link -> $target"
    if ! { mkdir -p "$(dirname "$link")" && ln -sfn "$target" "$link"; } 2>/dev/null; then
        echo "[install] cannot create $link (needs write access to /opt): run once as root:" >&2
        echo "  mkdir -p $(dirname "$link") && ln -sfn $target $link" >&2
        exit 1
    fi
}
link_if_missing /opt/python/cp311-cp311/include/python3.11 "$py_include"
link_if_missing /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include "$np_include"

# --- 4. colcon build ---------------------------------------------------------------------------
t=$SECONDS
log "colcon build into $WS_DIR (its warning that the venv has no local_setup files is expected)"
(
    # The venv is the only underlay: a sourced system ROS would mix two distributions.
    export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV"
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
    unset COLCON_PREFIX_PATH PYTHONPATH
    "$VENV/bin/colcon" --log-base "$WS_DIR/log" build \
        --base-paths . msg \
        --build-base "$WS_DIR/build" --install-base "$WS_DIR/install" \
        --symlink-install \
        --event-handlers console_cohesion- console_direct- summary+ \
        --cmake-args -DPython3_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF
)
log "colcon build done in $(elapsed "$t")"

# --- 5. check ------------------------------------------------------------------------------------
# The env.sh shell must also see this distro's rclpy (the right venv, nothing else on the path).
ROS_DISTRO="$ROS_DISTRO" VENV="$VENV" WS_DIR="$WS_DIR" bash -c '
    set -euo pipefail
    source scripts/env.sh
    python -c "import cotracker3_core, cotracker3_ros, cotracker3_msgs.msg, cotracker3_msgs.srv, rclpy"
'
log "ok: ROS 2 $ROS_DISTRO installed in $(elapsed "$t_total"); use it with:" \
    "${suffix:+ROS_DISTRO=$ROS_DISTRO }source scripts/env.sh"
