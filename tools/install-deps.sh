#!/bin/sh
# Installs the Debian packages pysprinter needs to build and test; a no-op
# when they are all present. nodejs provides npm (for ui/); strace lets the
# e2e tests count system calls; chromium,
# chromium-driver and python3-selenium drive the dashboard's browser tests
# (tests/e2e/test_ui.py): nothing downloads a browser of its own;
# python3-prometheus-client's parser reads /metrics as a scraper does
# (tests/e2e/test_explore_observe.py). Runs as root (or through sudo when available).
set -eu
PKGS="meson ninja-build pkg-config gcc python3 python3-dev
libjansson-dev libcurl4-openssl-dev libsqlite3-dev libseccomp-dev
libarchive-dev libmicrohttpd-dev libyaml-dev libhiredis-dev libssl-dev
libcmocka-dev libmimalloc-dev libjemalloc-dev python3-pytest python3-packaging python3-venv python3-pip
python3-requests python3-urllib3 python3-idna python3-certifi
python3-charset-normalizer python3-six python3-numpy python3-yaml
python3-boto3 redis-server clang libclang-rt-14-dev iproute2 procps wrk
zsh fish strace
chromium chromium-driver python3-selenium nodejs python3-prometheus-client"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # apt-get update once when the package lists are missing or older than a day.
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
        $SUDO apt-get update -q
    fi
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -q --no-install-recommends $missing
fi

# The dashboard's third-party modules (ui/package.json, exact versions in
# ui/package-lock.json): npm ci installs them when ui/node_modules is missing
# or older than the lockfile. The build embeds them into pysprinterd.
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -f "$root/ui/node_modules/.package-lock.json" ] ||
   [ "$root/ui/package-lock.json" -nt "$root/ui/node_modules/.package-lock.json" ]; then
    (cd "$root/ui" && npm ci --no-audit --no-fund --ignore-scripts)
fi
