#!/bin/sh
# Install the Debian packages fastnet needs for a target ("run" or "test"), skipping the ones
# already present. Runs apt-get as root, or through sudo when not root.
set -eu
target=${1:-test}

run_pkgs="iproute2 curl"
# The guest-side programs the tests run in namespaces: iperf3, nc (netcat-openbsd), udhcpc
# (busybox), dhclient, ping, dig (dnsutils); tinyproxy and openssl for the proxy tests;
# rootlesskit and uidmap (newuidmap/newgidmap) for the rootlesskit tests; slirp4netns, whose API
# answers `fastnet slirp4netns` is checked against.
test_pkgs="$run_pkgs procps iperf3 netcat-openbsd busybox isc-dhcp-client iputils-ping dnsutils tinyproxy openssl rootlesskit uidmap slirp4netns"

case "$target" in
    run) pkgs=$run_pkgs ;;
    test) pkgs=$test_pkgs ;;
    *) echo "install-deps.sh: unknown target '$target' (run or test)" >&2; exit 2 ;;
esac

# A venv-capable Python with headers and a C compiler are needed to build the extension.
python3 -c 'import venv, ensurepip, sysconfig, os; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' 2>/dev/null \
    || pkgs="$pkgs python3-venv python3-dev"
command -v gcc >/dev/null 2>&1 || pkgs="$pkgs gcc"

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
echo "installing:$missing"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
