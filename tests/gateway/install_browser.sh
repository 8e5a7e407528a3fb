#!/usr/bin/env bash
# Installs what the browser test drives: Debian's chromium + chromium-driver, and a Japanese font
# (without one the page's labels render as boxes in the screenshot). Idempotent; needs root (CI is).
# Called by `make test` before pytest; tests/gateway/test_browser.py calls it too when they are missing.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
fc-list 2>/dev/null | grep -qi -e ipagothic -e "noto sans cjk" || need+=(fonts-ipafont-gothic)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: missing ${need[*]}; install them as root (apt-get install -y ${need[*]})" >&2
    exit 0  # the browser test then skips with the same advice
fi
echo "install_browser.sh: apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
}
