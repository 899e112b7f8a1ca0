#!/usr/bin/env bash
# One bounded run of the Quix Streams peer: see drive.py (all arguments go to it).
#   benches/peer/run_peer.sh [--records 100000] [--duplicate] [--batch-num-messages 1]
# Creates the peer's venv on first use (PyPI, requirements.txt). The driver starts Tansu and
# the registry and stops them itself, also on failure; this trap forwards Ctrl-C/TERM to it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${QUIX_VENV:-$HOME/.cache/credstream/quix-venv}"
PYTHON="${PYTHON:-python3.11}"

if ! "$VENV/bin/python" -c 'import quixstreams' 2>/dev/null; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
fi

"$VENV/bin/python" "$HERE/drive.py" "$@" &
DRIVER=$!
trap 'kill -TERM "$DRIVER" 2>/dev/null || true; wait "$DRIVER" || true; exit 130' INT TERM HUP
set +e
wait "$DRIVER"
STATUS=$?
trap - INT TERM HUP
exit "$STATUS"
