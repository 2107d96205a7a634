#!/usr/bin/env bash
# Runs every test. The integration tests start real MariaDB 10.11 servers
# and real S3 servers (versitygw), so both are installed first when they are
# missing (and stock age, which decrypts what understudy encrypts, and the
# CONNECT engine, whose tables a snapshot must tell apart); a missing one
# makes the tests fail, never skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ] || ! command -v mariadb-binlog >/dev/null 2>&1 \
  || ! command -v chromium >/dev/null 2>&1 || ! command -v systemd-analyze >/dev/null 2>&1 \
  || ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1 \
  || ! command -v age >/dev/null 2>&1 || [ ! -f /usr/lib/mysql/plugin/ha_connect.so ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mariadb-server mariadb-client mariadb-plugin-connect chromium systemd prometheus age >/dev/null
fi

# The S3 tests run against a real versitygw (internal/s3test finds it in
# $PATH or in $(go env GOPATH)/bin, and fails when it is missing).
if ! command -v versitygw >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/versitygw" ]; then
  go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi

go vet ./...
go test -count=1 -timeout 60m ./...
