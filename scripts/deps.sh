#!/bin/sh
# Installs the Debian packages albef needs to build and test, if any are missing.
# As root it runs apt-get; otherwise it prints the apt-get line and stops.
#   scripts/deps.sh           build + tests
#   scripts/deps.sh --fuzz    also clang (libFuzzer)
set -eu

pkgs="make gcc libc6-dev libopenblas-dev libcjson-dev libpng-dev libjpeg62-turbo-dev libcmocka-dev libutf8proc-dev libzip-dev"
if [ "${1:-}" = "--fuzz" ]; then
    pkgs="$pkgs clang libclang-rt-dev libomp-dev"
fi

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "albef needs these packages:$missing" >&2
    echo "install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
