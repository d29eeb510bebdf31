#!/bin/sh
# Print the path of the first Python 3.11 or newer on PATH; exit 1 (and say what was tried) if none.
# The Makefile's default PYTHON. Candidates in order: python3 (the system's own), then
# python3.11 ... python3.14, then python. Each is run once: pyenv shims and the like that exist
# but cannot start are skipped.
#   sh packaging/find-python.sh            -> /usr/bin/python3
#   sh packaging/find-python.sh --check P  -> exit 0 if P is Python 3.11+, else say why and exit 1
set -u

new_enough() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

version_of() {
  "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || echo "cannot run"
}

if [ "${1:-}" = "--check" ]; then
  if new_enough "$2"; then exit 0; fi
  echo "error: PYTHON=$2 is not Python 3.11 or newer ($(version_of "$2")); pick another with" \
       "'make run PYTHON=/path/to/python3.12'" >&2
  exit 1
fi

tried=""
for name in python3 python3.11 python3.12 python3.13 python3.14 python; do
  path=$(command -v "$name" 2>/dev/null) || continue
  if new_enough "$path"; then
    echo "$path"
    exit 0
  fi
  tried="$tried $path ($(version_of "$path"))"
done
echo "error: no Python 3.11 or newer found on PATH (tried:${tried:- nothing}). Install one" \
     "(Debian/Ubuntu: sudo apt install python3 python3-venv) or name it:" \
     "make run PYTHON=/path/to/python3.12" >&2
exit 1
