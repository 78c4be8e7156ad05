# Source me (bash): activates the venv and the colcon install made by scripts/install.sh.
#
#   source scripts/env.sh
#
#   ROS_DISTRO=jazzy source scripts/env.sh    (the Jazzy install: .venv-jazzy + build/ws-jazzy)
#
# Honours the same overrides as install.sh: ROS_DISTRO (kilted, the default, or jazzy), VENV (default
# <repo>/.venv, <repo>/.venv-jazzy for jazzy), WS_DIR (default <repo>/build/ws, build/ws-jazzy for
# jazzy), and exports ROS_DISTRO as a system ROS 2 setup does (bash keeps a `ROS_DISTRO=jazzy source`
# prefix only while the file runs: `export ROS_DISTRO=jazzy` first to keep it). Safe for callers running
# under `set -euo pipefail`.
# shellcheck shell=bash

_ct3_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_ct3_distro=${ROS_DISTRO:-kilted}
# As in install.sh: a value other than jazzy (say humble, from a sourced system ROS 2) means kilted.
case $_ct3_distro in
    jazzy) _ct3_suffix="-jazzy" ;;
    kilted) _ct3_suffix="" ;;
    *)
        echo "scripts/env.sh: warning: ROS_DISTRO=$_ct3_distro is not installed by scripts/install.sh; using kilted" >&2
        _ct3_distro=kilted _ct3_suffix=""
        ;;
esac
_ct3_venv=${VENV:-$_ct3_root/.venv$_ct3_suffix}
_ct3_ws=${WS_DIR:-$_ct3_root/build/ws$_ct3_suffix}

if [[ ! -f "$_ct3_venv/bin/activate" || ! -f "$_ct3_ws/install/setup.bash" ]]; then
    echo "scripts/env.sh: no $_ct3_distro install found ($_ct3_venv, $_ct3_ws/install):" \
        "run '${_ct3_suffix:+ROS_DISTRO=$_ct3_distro }bash scripts/install.sh' first" >&2
    unset _ct3_root _ct3_distro _ct3_suffix _ct3_venv _ct3_ws
    return 1 2>/dev/null || exit 1
fi
export ROS_DISTRO=$_ct3_distro

# venv's activate and colcon's setup scripts read unset variables: relax `set -u` around them.
case $- in *u*) _ct3_nounset=1 ;; *) _ct3_nounset=0 ;; esac
set +u

# A value inherited from another venv's python would stop the ROS wheels' library-path re-exec.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
# shellcheck disable=SC1091
source "$_ct3_venv/bin/activate"
# The venv holds the ROS wheels' ament index; the colcon install chains on top of it.
export AMENT_PREFIX_PATH="$_ct3_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$_ct3_venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
# shellcheck disable=SC1091
source "$_ct3_ws/install/setup.bash"

if [[ $_ct3_nounset == 1 ]]; then set -u; fi
unset _ct3_root _ct3_distro _ct3_suffix _ct3_venv _ct3_ws _ct3_nounset
