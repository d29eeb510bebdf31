#!/bin/sh
# Add teddywatch to this user's application menu (no root needed). Run it from the unpacked
# bundle folder, wherever that lives; `--uninstall` removes the entry and icon again.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
apps=$data/applications
icons=$data/icons/hicolor/256x256/apps

if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$apps/teddywatch.desktop" "$icons/teddywatch.png"
  done_what=removed
else
  mkdir -p "$apps" "$icons"
  cp "$here/teddywatch.png" "$icons/teddywatch.png"
  # Exec= gets this folder's executable, quoted as the Desktop Entry spec asks ("\\", "\"", "\`"
  # and "\$" inside double quotes, each backslash doubled once more for the string type).
  quoted=$(printf '%s' "$here/teddywatch" | sed 's/[\\"`$]/\\\\&/g')
  EXE_QUOTED=$quoted TRY_EXEC=$here/teddywatch awk '
    /^Exec=teddywatch / { sub(/^Exec=teddywatch /, ""); print "Exec=\"" ENVIRON["EXE_QUOTED"] "\" " $0; next }
    /^TryExec=/ { print "TryExec=" ENVIRON["TRY_EXEC"]; next }
    { print }' "$here/teddywatch.desktop" > "$apps/.teddywatch.desktop.tmp"
  mv "$apps/.teddywatch.desktop.tmp" "$apps/teddywatch.desktop"
  done_what=installed
fi
if command -v update-desktop-database >/dev/null 2>&1; then
  update-desktop-database -q "$apps" || true
fi
if command -v gtk-update-icon-cache >/dev/null 2>&1; then
  gtk-update-icon-cache -q -t "$data/icons/hicolor" 2>/dev/null || true
fi
echo "teddywatch menu entry $done_what: $apps/teddywatch.desktop"
