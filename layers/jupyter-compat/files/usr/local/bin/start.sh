#!/bin/sh
# Platform start script (replaces the science image's start.sh).
set -e
cd "${HOME:-/home/jovyan}"
exec "$@" --port="${JUPYTER_PORT:-8888}" --no-browser
