#!/usr/bin/env bash
# Runs every test. The integration tests start real MariaDB 10.11 servers,
# so MariaDB is installed first when it is missing; a missing MariaDB makes
# the tests fail, never skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ] || ! command -v mariadb-binlog >/dev/null 2>&1 \
  || ! command -v chromium >/dev/null 2>&1 || ! command -v systemd-analyze >/dev/null 2>&1 \
  || ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mariadb-server mariadb-client chromium systemd prometheus >/dev/null
fi

go vet ./...
go test -count=1 -timeout 60m ./...
