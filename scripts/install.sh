#!/usr/bin/env bash
# Install everything callmeter's tests and quickstart need, idempotently:
# the real peers (SIPp, Kamailio with sqlite, baresip without GUI, tshark) and Chromium (the
# browser tests drive it with Playwright; no browser download) from Debian packages, then
# callmeter itself in editable mode with its test extras, the media hot path compiled with mypyc
# beside the sources (setup.py; CALLMETER_PURE=1 installs pure Python).
#
# apt runs only when a peer binary is missing (one `apt-get update`, then one install).
# Needs root (or sudo) for apt; the pip step uses whatever `python` is first on PATH,
# or $PYTHON.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}

# file:package (baresip-core, not baresip: the latter pulls GTK and X11).
peers=(
  /usr/bin/sipp:sip-tester
  /usr/sbin/kamailio:kamailio
  /usr/sbin/kamcmd:kamailio
  "/usr/lib/*/kamailio/modules/db_sqlite.so:kamailio-sqlite-modules"
  /usr/bin/baresip:baresip-core
  /usr/bin/tshark:tshark
  /usr/bin/chromium:chromium
)

missing=()
for entry in "${peers[@]}"; do
  pattern=${entry%%:*}
  package=${entry##*:}
  if ! compgen -G "$pattern" >/dev/null; then
    missing+=("$package")
  fi
done
# mypyc compiles the media hot path: a C compiler and the interpreter's headers
if [[ ${CALLMETER_PURE:-} != 1 ]]; then
  command -v cc >/dev/null || missing+=(gcc)
  if ! "$python" -c 'import os, sysconfig, sys
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    missing+=(python3-dev)
  fi
fi

if ((${#missing[@]})); then
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
  fi
  echo "install.sh: installing ${missing[*]}"
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    sip-tester kamailio kamailio-sqlite-modules baresip-core tshark chromium "${missing[@]}"
else
  echo "install.sh: SIPp, Kamailio, baresip, tshark and chromium already installed"
fi

# The Debian kamailio package enables a service with the stock config on port 5060; the
# tests never use it and pick free ports, so it is left alone.

cd "$repo"
"$python" -m pip install --quiet -e '.[test]'
