#!/usr/bin/env bash
# Build the wheel and install it into a fresh virtualenv: the one script the
# Dockerfile and CI both run (docs/deployment.md).
#
#   deploy/build.sh VENV          build dist/*.whl, create VENV, install the wheel
#
# WHEEL_DIR (default: dist/ in the checkout) receives the wheel; a wheel already
# there for this version is rebuilt. PYTHON (default: python3, with pip 22.3 or
# later) makes the venv. pip's own variables apply (PIP_NO_COMPILE=1 skips
# writing .pyc files: faster, for throwaway installs such as the tests').
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 VENV" >&2
  exit 2
fi
venv=$1
src=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
wheel_dir=${WHEEL_DIR:-$src/dist}
mkdir -p "$wheel_dir"
wheel_dir=$(cd "$wheel_dir" && pwd)

# Built from a copy: setuptools reuses build/ in the source folder, where a file
# deleted since the last build would still reach the wheel, and two builds at
# once would share it.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$src" -cf - \
  --exclude=./.git --exclude=./.venv --exclude=./instance --exclude=./build \
  --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ --exclude=./tests \
  --exclude=./bench --exclude=./node_modules . | tar -C "$work" -xf -

version=$("$python" - "$work/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as handle:
    project = tomllib.load(handle)["project"]
print(project["name"].replace("-", "_") + "-" + project["version"])
PY
)
rm -f "$wheel_dir/$version"-*.whl
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$wheel_dir" "$work"
wheel=$(ls "$wheel_dir/$version"-*.whl)

# Without a pip of its own (bootstrapping one is the slowest step): the building
# Python's pip installs into it. The service never installs anything at run time;
# an upgrade is a new wheel through this script.
"$python" -m venv --without-pip "$venv"
"$python" -m pip --python "$venv/bin/python" install --quiet --disable-pip-version-check "$wheel"
echo "$wheel installed into $venv"
