#!/bin/sh
# The `teddywatch` command on PATH for `make run`, and `make uninstall`. No root needed.
#   sh packaging/user-install.sh link VENV BIN_DIR             link BIN_DIR/teddywatch to VENV's
#   sh packaging/user-install.sh uninstall VENV BIN_DIR [1]    undo it (1: remove config and data)
set -eu

mode=$1
venv=$2
bin_dir=$3
purge=${4:-}
link=$bin_dir/teddywatch

on_path() {
  case ":$PATH:" in *":$1:"*) return 0 ;; esac
  return 1
}

if [ "$mode" = link ]; then
  target=$(cd "$venv/bin" && pwd)/teddywatch
  if [ ! -x "$target" ]; then
    echo "error: $target is missing; run 'make setup-run' again" >&2
    exit 1
  fi
  if [ -e "$link" ] && [ ! -L "$link" ]; then
    echo "note: left $link alone: it is not a link (another installation of teddywatch?);" \
         "this one is $target"
    exit 0
  fi
  mkdir -p "$bin_dir"
  ln -sfn "$target" "$link"
  echo "linked $link -> $target"
  if on_path "$bin_dir"; then
    found=$(command -v teddywatch 2>/dev/null || true)
    if [ -n "$found" ] && [ "$found" != "$link" ]; then
      echo "warning: '$found' comes first on your PATH, so 'teddywatch' runs that one;" \
           "remove it or run $link"
    else
      echo "'teddywatch' works in any shell now (try 'teddywatch --help')"
    fi
  else
    echo "warning: $bin_dir is not on your PATH, so a new shell will not find 'teddywatch'." \
         "Add it: echo 'export PATH=\"$bin_dir:\$PATH\"' >> ~/.profile, then log in again" \
         "(Debian and Ubuntu add ~/.local/bin at login once it exists). Meanwhile run $link"
  fi
  exit 0
fi

if [ "$mode" != uninstall ]; then
  echo "usage: $0 link|uninstall VENV BIN_DIR [PURGE]" >&2
  exit 2
fi

app=""
if [ -x "$venv/bin/teddywatch" ]; then
  app="$venv/bin/teddywatch"
fi

# 1. The command.
if [ -L "$link" ]; then
  rm -f "$link"
  echo "removed $link"
elif [ -e "$link" ]; then
  echo "note: left $link alone: it is not a link made by 'make run'"
fi

# 2. Start at login (the app knows each platform's place), then the folders it names.
folders=""
if [ -n "$app" ]; then
  "$app" autostart off
  folders=$("$app" paths --folders)
else
  entry=${XDG_CONFIG_HOME:-$HOME/.config}/autostart/teddywatch.desktop
  if [ -e "$entry" ]; then
    rm -f "$entry"
    echo "removed $entry"
  fi
fi

# 3. The runtime itself.
if [ -f "$venv/pyvenv.cfg" ]; then
  rm -rf "$venv"
  echo "removed $venv"
fi

# 4. Config and data: kept unless asked. One folder a line (names may hold spaces).
IFS='
'
if [ -z "$folders" ]; then
  echo "config and data (if any) stay where 'teddywatch paths' showed them" \
       "(Linux: ~/.config/teddywatch, ~/.local/share/teddywatch, ~/.local/state/teddywatch)"
elif [ "$purge" = 1 ]; then
  for folder in $folders; do
    case "$folder" in
      *teddywatch*) if [ -e "$folder" ]; then rm -rf "$folder"; echo "removed $folder"; fi ;;
      *) echo "note: left $folder alone (not a teddywatch folder)" ;;
    esac
  done
  echo "watched and sorted pictures were not touched"
else
  echo "kept your config and data (remove them with 'make uninstall PURGE=1'):"
  for folder in $folders; do
    if [ -e "$folder" ]; then echo "  $folder"; fi
  done
fi
