#!/usr/bin/env bash
# One command from a fresh clone on Debian/Ubuntu: set up ./.venv, then run
#   ./bootstrap.sh demo [--out DIR]   the Linear -> ReLU -> MSE demo (gradients checked, diagram written)
#   ./bootstrap.sh test [PYTEST ARGS] lint, the whole test suite, and the strict docs build
# With CI=true (or TAPE_ALL_PYTHONS=1) `test` also runs the test suite on every other
# CPython from requires-python up that the machine has, and on the oldest versions of the
# dependencies pyproject.toml declares, each in its own .venv-VERSION; one line per run.
# System packages (python3-venv, graphviz, chromium for the browser test) are
# installed with apt-get when missing: as root directly, otherwise through sudo.
set -euo pipefail
cd "$(dirname "$0")"
task=${1:-}
[ $# -gt 0 ] && shift

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
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

NEWEST_PYTHON=13 # the newest CPython 3.x tape is tested on; CI runs every one from the floor up
failed_runs=0
summary=() queued=()
total_passed=0 total_failed=0 total_skipped=0

log_of() { echo "build/pytest-${1//[^A-Za-z0-9.]/_}.log"; }

count_suite() { # count_suite VENV LABEL RC: one line of counts from the run's log
  local venv=$1 label=$2 rc=$3 log line passed failed errors skipped
  log=$(log_of "$label")
  line=$(grep -E '^=*.*[0-9]+ (passed|failed|error|errors|skipped).* in [0-9.]+s' "$log" | tail -n 1)
  count() { echo "$line" | grep -oE "[0-9]+ $1" | grep -oE '[0-9]+' || echo 0; }
  passed=$(count passed) failed=$(count failed) errors=$(count 'errors?') skipped=$(count skipped)
  failed=$((failed + errors))
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi # pytest itself failed
  [ "$rc" -eq 0 ] || failed_runs=$((failed_runs + 1))
  total_passed=$((total_passed + passed)) total_failed=$((total_failed + failed))
  total_skipped=$((total_skipped + skipped))
  summary+=("$label, numpy $("$venv/bin/python" -c 'import numpy; print(numpy.__version__)'): $passed passed, $failed failed, $skipped skipped")
  echo "bootstrap: ${summary[-1]}"
}

run_suite() { # run_suite VENV LABEL [PYTEST ARGS]: pytest, shown as it runs, then its counts
  local venv=$1 label=$2 rc
  shift 2
  mkdir -p build
  set +e
  "$venv/bin/python" -m pytest "$@" 2>&1 | tee "$(log_of "$label")"
  rc=${PIPESTATUS[0]}
  set -e
  count_suite "$venv" "$label" "$rc"
}

run_suites() { # run_suites [PYTEST ARGS]: every queued "VENV|LABEL", one per core at a time
  local width job venv label
  width=$(nproc 2>/dev/null || echo 1)
  mkdir -p build
  echo "bootstrap: ${#queued[@]} more runs of the test suite, $width at a time (their output: build/pytest-*.log)"
  for job in "${queued[@]}"; do
    venv=${job%%|*} label=${job#*|}
    while [ "$(jobs -rp | wc -l)" -ge "$width" ]; do wait -n || true; done
    (
      set +e
      "$venv/bin/python" -m pytest -p no:cacheprovider "$@" >"$(log_of "$label")" 2>&1
      echo $? >"$(log_of "$label").rc"
    ) &
  done
  wait
  for job in "${queued[@]}"; do
    venv=${job%%|*} label=${job#*|}
    count_suite "$venv" "$label" "$(cat "$(log_of "$label").rc")"
    grep -E '^(FAILED|ERROR) ' "$(log_of "$label")" | head -n 40 | sed 's/^/    /' || true
  done
}

identity() { "$1" -c 'import os, sys; print(sys.version.split()[0], os.path.realpath(sys._base_executable))'; }

pythons() { # "VERSION PATH", one line per distinct CPython 3.$1 on this machine
  local c
  for c in "$(command -v "python3.$1" 2>/dev/null)" "/usr/bin/python3.$1" "/usr/local/bin/python3.$1" \
    "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3."$1".*/bin/python3."$1"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    "$c" -c 'import os, sys; print(sys.version.split()[0], os.path.realpath(sys.executable))' 2>/dev/null || true
  done | sort -u
}

venv_for() { # venv_for PYTHON DIR [PIP REQUIREMENTS...]: a venv with tape's test extras
  local python=$1 dir=$2
  shift 2
  if [ ! -x "$dir/bin/python" ]; then
    "$python" -m venv "$dir" >/dev/null 2>&1 || { rm -rf "$dir"; apt_install python3-venv; "$python" -m venv "$dir"; }
  fi
  mkdir -p build
  "$dir/bin/python" -m pip install -q "$@" -e ".[dev,examples]" >"build/pip-${dir#.}.log" 2>&1 ||
    { grep -v '^WARNING: Location' "build/pip-${dir#.}.log" >&2; return 1; }
}

.venv/bin/python -m pip install -q -e ".[dev,docs,examples]"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
run_suite .venv "python $(identity .venv/bin/python | cut -d' ' -f1) (.venv)" "$@"
export NO_MKDOCS_2_WARNING=1  # the maintainers' banner about a successor tool, not about us
if [ -f mkdocs.yml ]; then .venv/bin/mkdocs build --strict --quiet --site-dir build/site; fi

if [ "${CI:-}" = true ] || [ -n "${TAPE_ALL_PYTHONS:-}" ]; then
  # Declared and tested are the same thing: the floors come from pyproject.toml.
  floor=$(sed -n 's/^requires-python = ">=3\.\([0-9]*\)".*/\1/p' pyproject.toml)
  mapfile -t lowest < <(.venv/bin/python - <<'EOF'
import re
text = open("pyproject.toml", encoding="utf-8").read()
deps = re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M).group(1)
for name, version in re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)"', deps):
    print(f"{name}=={version}")
EOF
  )
  main=$(identity .venv/bin/python)
  oldest=""
  for minor in $(seq "$floor" "$NEWEST_PYTHON"); do
    found=$(pythons "$minor")
    if [ -z "$found" ]; then
      echo "bootstrap: Python 3.$minor is not on this machine: skipped"
      continue
    fi
    while read -r version path; do
      [ -n "$oldest" ] || oldest="$version $path"
      [ "$version $path" != "$main" ] || continue # the run above
      venv_for "$path" ".venv-$version"
      queued+=(".venv-$version|python $version ($path)")
    done <<<"$found"
  done
  if [ -n "$oldest" ]; then
    read -r version path <<<"$oldest"
    echo "bootstrap: the oldest dependencies declared: ${lowest[*]}, on Python $version"
    venv_for "$path" ".venv-$version-lowest" "${lowest[@]}"
    queued+=(".venv-$version-lowest|python $version, lowest dependencies")
  fi
  run_suites "$@"
fi

echo
printf 'bootstrap: %s\n' "${summary[@]}"
echo "total: $total_passed passed, $total_failed failed, $total_skipped skipped"
[ "$failed_runs" -eq 0 ]
