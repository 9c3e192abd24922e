#!/bin/sh
# install-deps.sh - install the Debian 12 packages msaproxy needs to build,
# test, run the demo and bench.  Idempotent: asks apt only for what is
# missing, and does nothing at all when everything is there.
#
# Usage: scripts/install-deps.sh [--bench]   (as root, or with sudo)
#   --bench  also the bench's peers: nginx's mail proxy, gnuplot, perf,
#            hping3 (SYN flood) and nftables (the flood scenario)
set -eu

PKGS="
build-essential pkg-config clang llvm lld libclang-rt-14-dev
libssl-dev openssl liburing-dev libbpf-dev bpftool libelf-dev zlib1g-dev
libhiredis-dev redis-server libargon2-dev argon2
libpwquality-dev cracklib-runtime
libjemalloc-dev libcrypt-dev libyaml-dev libcmocka-dev libcap-dev libseccomp-dev
python3 python3-pytest python3-pytest-xdist python3-aiosmtpd python3-yaml
swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl
curl postfix iproute2 clang-format dovecot-core
testssl.sh mandoc python3-seccomp systemd man-db groff-base
haproxy prometheus chromium nodejs
"
if [ "${1:-}" = "--bench" ]; then
	PKGS="$PKGS nginx-light libnginx-mod-mail gnuplot-nox linux-perf valgrind"
	PKGS="$PKGS hping3 nftables"
fi

missing=""
# npm: Debian's package, unless a node install (e.g. NodeSource's nodejs)
# already brings its own npm.
command -v npm >/dev/null 2>&1 || missing="npm"
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Postfix asks questions on install; answer them up front (local only).
echo "postfix postfix/main_mailer_type select Local only" | $SUDO debconf-set-selections
echo "postfix postfix/mailname string msaproxy.test" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2
