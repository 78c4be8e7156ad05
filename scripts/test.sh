#!/usr/bin/env bash
# Lint and test in the installed environment (run `make install` / scripts/install.sh first).
#
#   bash scripts/test.sh                 # ruff check . && pytest on test/
#   bash scripts/test.sh -k dds -x       # extra arguments go to pytest (test/ is still the target
#                                        # unless you name paths yourself)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck disable=SC1091
source scripts/env.sh

ruff check .

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
exit "$rc"
