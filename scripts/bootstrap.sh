#!/usr/bin/env bash
# Prepares a fresh Debian / Raspberry Pi OS machine for scripts/demo and scripts/test:
# system packages when missing, then .venv with the project installed editable
# (with the demo's and the tests' extras, versions from constraints.txt).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_pkgs+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_pkgs+=(mosquitto-clients)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
# The inbox's browser tests drive Debian's Chromium through Playwright (never `playwright install`,
# which downloads a browser build of its own).
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
# The situational report's PDF: WeasyPrint needs Pango (and a font); its test reads the PDF
# with poppler-utils (pdftoppm, pdftotext).
have_lib() { compgen -G "/usr/lib/*/$1" >/dev/null || compgen -G "/lib/*/$1" >/dev/null; }
have_lib libpango-1.0.so.0 || need_pkgs+=(libpango-1.0-0)
have_lib libpangoft2-1.0.so.0 || need_pkgs+=(libpangoft2-1.0-0)
have_lib libharfbuzz-subset.so.0 || need_pkgs+=(libharfbuzz-subset0)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_pkgs+=(fonts-dejavu-core)
command -v pdftoppm >/dev/null 2>&1 || need_pkgs+=(poppler-utils)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${need_pkgs[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""
  elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"
  else
    echo "bootstrap: need root or sudo to install: ${need_pkgs[*]}" >&2
    echo "bootstrap: run 'apt-get install ${need_pkgs[*]}' as root, then try again." >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

# Python >= 3.11 is required.
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: $PY is older than 3.11; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
# constraints.txt pins the versions CI tested (the demo's extras are part of dev).
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "bootstrap: installing vaktpost[dev] into .venv (a few minutes the first time; log: .venv/install.log)"
  if ! { .venv/bin/python -m pip install -c constraints.txt --upgrade pip \
         && .venv/bin/python -m pip install -c constraints.txt -e '.[dev]'; } > .venv/install.log 2>&1; then
    tail -n 40 .venv/install.log >&2
    echo "bootstrap: pip install failed; the whole log is in .venv/install.log" >&2
    exit 1
  fi
  touch "$stamp"
fi
