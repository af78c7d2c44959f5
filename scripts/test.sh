#!/usr/bin/env bash
# Set up everything the tests need, then run the whole suite. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
VENV="${VENV:-.venv}"
export AMENT_PREFIX_PATH="$(cd "$VENV" && pwd)${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# Keep DDS discovery on this host and away from other runs: ROS_LOCALHOST_ONLY is ignored by
# Kilted, ROS_AUTOMATIC_DISCOVERY_RANGE is not; a random domain keeps parallel runs apart.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "test.sh: pytest collected no test" >&2; exit 1; fi
exit "$rc"
