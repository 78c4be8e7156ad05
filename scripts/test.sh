#!/usr/bin/env bash
# Lint (ruff) and test (pytest) in the installed environment (run `make install` / scripts/install.sh first).
#
#   bash scripts/test.sh                 # ruff check ., then pytest on test/ (both always run)
#   bash scripts/test.sh -k dds -x       # extra arguments go to pytest (test/ is still the target
#                                        # unless you name paths yourself)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck disable=SC1091
source scripts/env.sh

# Lint first, but run the tests even when it fails, so one run reports both; either fails the script.
lint_rc=0
ruff check . || lint_rc=$?
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
