#!/bin/sh
# Platform start script for shell images.
set -e
platform-info >&2
exec "$@"
