#!/usr/bin/env bash
# Debian packages the service and its tests need beyond Python: fonts and HarfBuzz for the PDF
# dossiers (WeasyPrint), poppler-utils (pdftoppm) to look at a rendered page, Chromium for the
# real-browser journeys. Installs the missing ones with apt-get; never downloads a browser
# any other way. Exit 1, naming the packages, when they are missing and cannot be installed.
set -euo pipefail
packages=(fonts-dejavu-core libharfbuzz-subset0 poppler-utils chromium)
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then exit 0; fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "Missing Debian packages: ${missing[*]}. Install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
echo "Installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
