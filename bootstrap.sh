#!/usr/bin/env bash
# One command from a fresh clone on Debian/Ubuntu: set up ./.venv, then run
#   ./bootstrap.sh demo [--out DIR]   the Linear -> ReLU -> MSE demo (gradients checked, diagram written)
#   ./bootstrap.sh test [PYTEST ARGS] lint, the whole test suite, and the strict docs build
# System packages (python3-venv, graphviz, chromium for the browser test) are
# installed with apt-get when missing: as root directly, otherwise through sudo.
set -euo pipefail
cd "$(dirname "$0")"
task=${1:-}
[ $# -gt 0 ] && shift

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }
case "$task" in demo | test) ;; *) usage; exit 2 ;; esac

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "bootstrap: need root to run: $*" >&2; return 1
  fi
}

apt_updated=""
apt_install() { # install the Debian packages among "$@" that are missing
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: not a Debian/Ubuntu system; please install: ${missing[*]}" >&2
    return 1
  fi
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  echo "bootstrap: apt-get install ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Python 3.10+ with venv
command -v python3 >/dev/null 2>&1 || apt_install python3
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
  echo "bootstrap: tape needs Python 3.10 or newer, found $(python3 --version)" >&2
  exit 1
}
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv >/dev/null 2>&1 || { rm -rf .venv; apt_install python3-venv; python3 -m venv .venv; }
fi

# Graphviz's `dot` renders SVG/PNG/PDF (the .dot text needs no binary)
command -v dot >/dev/null 2>&1 || apt_install graphviz || echo "bootstrap: no Graphviz: diagrams are written as .dot only" >&2

if [ "$task" = demo ]; then
  .venv/bin/python -m pip install -q -e .
  exec .venv/bin/tape demo "$@"
fi

# test: headless Chromium drives the step-through page's browser test (skipped without it)
command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 ||
  apt_install chromium chromium-driver || echo "bootstrap: no Chromium: the browser test will be skipped" >&2
.venv/bin/python -m pip install -q -e ".[dev,docs,examples]"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
export NO_MKDOCS_2_WARNING=1  # the maintainers' banner about a successor tool, not about us
if [ -f mkdocs.yml ]; then .venv/bin/mkdocs build --strict --quiet --site-dir build/site; fi
