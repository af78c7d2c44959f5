#!/usr/bin/env bash
# Set up mosaico_bridge in a venv (default .venv) from PyPI: ROS 2 Kilted wheels, pyarrow,
# rosbags, and this package. With --test, also the test dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
EXTRAS="ros"
[ "${1:-}" = "--test" ] && EXTRAS="ros,test"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
# Not -e: editable installs drop data_files (ament index, launch/, config/).
if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check ".[$EXTRAS]" >"$VENV/pip-install.log" 2>&1; then
  cat "$VENV/pip-install.log" >&2
  echo "setup.sh: pip install failed (log: $VENV/pip-install.log)" >&2
  exit 1
fi
"$VENV/bin/python" -c "import mosaico_bridge, pyarrow, rosbags, rclpy" \
  || { echo "setup.sh: the install in $VENV is incomplete" >&2; exit 1; }
echo "setup.sh: $VENV ready ($EXTRAS)" >&2
