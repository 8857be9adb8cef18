#!/usr/bin/env bash
# Idempotent: install Debian's Prometheus and Alertmanager (promtool, amtool) for tests and
# `volstream up`. Skips everything when promtool and amtool already exist. Never leaves a system
# prometheus/alertmanager daemon running (the Debian packages try to start one).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

stop_daemons() {
    # The package's postinst may start the daemons (no systemd here: init.d scripts). Stop them,
    # then end any process still run by the package's own `prometheus` user, by PID.
    for svc in prometheus prometheus-alertmanager; do
        if [ -x "/etc/init.d/$svc" ]; then "/etc/init.d/$svc" stop >/dev/null 2>&1 || true; fi
    done
    if id prometheus >/dev/null 2>&1; then
        for pid in $(pgrep -u prometheus 2>/dev/null || true); do kill "$pid" 2>/dev/null || true; done
    fi
    for port in 9090 9093; do
        if ss -ltn "sport = :$port" 2>/dev/null | grep -q LISTEN; then
            echo "monitoring-setup: warning: something still listens on :$port" >&2
        fi
    done
}

if have promtool && have amtool && have prometheus && have prometheus-alertmanager; then
    echo "monitoring-setup: prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}'), alertmanager present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d forbids daemon start-up during the install, so no system service is left behind.
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
    CREATED_POLICY=1
fi
trap '[ "$CREATED_POLICY" = 1 ] && $SUDO rm -f "$POLICY"' EXIT

$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null
stop_daemons
echo "monitoring-setup: installed $(prometheus --version 2>&1 | head -1)"
