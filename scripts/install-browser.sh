#!/usr/bin/env bash
# Installs what crates/cloakroom-cli/tests/browser.rs drives: Debian's Chromium and its
# chromedriver. Idempotent and non-interactive; does nothing when both are present.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    echo "install-browser: chromium and chromedriver already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium chromium-driver

/usr/bin/chromium --version
/usr/bin/chromedriver --version
