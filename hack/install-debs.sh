#!/usr/bin/env bash
# Install the Debian packages the repo's scripts need and that no language registry provides:
#   nginx-light   the sinks of the scale benchmark (bench/scale.py): fast, and its access log
#                 records arrival times for free, so measuring costs the adapters nothing;
#                 also a real server of the delivery tests (tests/unit/delivery, `make test`)
#                 and of bench/delivery_throughput.py.
#
# Usage: hack/install-debs.sh        (idempotent: installs only what `command -v` cannot find)
# Needs root (or sudo) and Debian's package archive; runs `apt-get update` once, only when
# something is missing.
set -euo pipefail

# command:package pairs; a package is installed only when its command is missing.
WANTED=(
  "nginx:nginx-light"
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi

missing=()
for pair in "${WANTED[@]}"; do
  cmd=${pair%%:*}
  pkg=${pair#*:}
  # nginx lives in /usr/sbin, which is not on every user's PATH.
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
