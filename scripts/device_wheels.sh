#!/usr/bin/env bash
# Builds, on this CPU machine, what the GPU pack carries: the wheel packs .whl-a/ and .whl-b/ (CPython 3.12,
# x86-64, the device image's CUDA 13) and the reference-data pack .device-data/, each checked against the 64 MiB
# a device call may carry. Run it in the checkout that the device tool sends, in the project's venv (the
# versions installed here are the ones packed). Details: scripts/device_wheels.py --help.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python scripts/device_wheels.py "$@"
