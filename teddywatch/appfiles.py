"""Every file and folder teddywatch writes, for `teddywatch paths`, the README and the uninstaller.

One list, built from the same functions the writers use (resources, gallery, logsetup, service),
so what `paths` prints is where the files really go.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from teddywatch import resources
from teddywatch.config import Config


@dataclass(frozen=True)
class AppFile:
    what: str      # "results log", "gallery", ...
    path: Path
    note: str = ""  # when it is written, if not always


def app_files(config: Config, config_path: Path | None) -> list[AppFile]:
    """What the app writes with this config (`config_path`: the file it was read from, if any)."""
    from teddywatch.gallery import THUMBS_DIR, VERSION_NAME, default_page
    from teddywatch.logsetup import LOG_FILE_NAME
    from teddywatch.service import state_file

    config_file = config_path or resources.default_config_path()
    files = [
        AppFile("config", config_file,
                "" if config_file.exists() else "not there yet: 'teddywatch config init' writes it"),
        AppFile("results log", config.log.path),
        AppFile("folder state", state_file(config.log.path), "beside the results log"),
    ]
    page = default_page()
    files.append(AppFile("gallery", page, "" if config.gallery.enabled else
                         "off ([gallery] enabled = false)"))
    files.append(AppFile("thumbnails", page.parent / THUMBS_DIR,
                         f"and {VERSION_NAME}, which an open page watches to reload itself"
                         if config.gallery.enabled else "off"))
    from teddywatch.teach import corrections, versions

    files.append(AppFile("corrections", corrections.default_root(),
                         "your corrections: a small copy of each picture and journal.csv"))
    files.append(AppFile("learned models", versions.default_root(),
                         "every version 'teddywatch learn' made, and which is in use"))
    files.append(AppFile("app log", resources.log_dir() / LOG_FILE_NAME,
                         "rotated at 1 MB, 3 old copies kept"))
    files.append(AppFile("start at login", _autostart_entry(),
                         "only while start at login is on"))
    files.append(AppFile("tray icon", resources.data_dir() / "teddywatch.png",
                         "written with the start-at-login entry"))
    for index, watch in enumerate(config.watch):
        files.append(AppFile(f"watched folder {index + 1}" if len(config.watch) > 1
                             else "watched folder", watch.path,
                             "created at the first run" if config.source is None else
                             "yours: read, never written (except sorting)"))
    if config.sort.enabled:
        files.append(AppFile("sorted into", config.sort.destination,
                             f"a folder per label ({config.sort.mode})"))
    return files


def app_folders() -> list[Path]:
    """The folders that hold only teddywatch's own files (what `make uninstall PURGE=1` removes).

    A results log or sort folder configured elsewhere, and the watched folders, are the user's."""
    log_dir = resources.log_dir()
    if log_dir.parent.name == resources.APP:  # Linux: ~/.local/state/teddywatch/log
        log_dir = log_dir.parent
    return list(dict.fromkeys([resources.config_dir(), resources.data_dir(), log_dir]))


def _autostart_entry() -> Path:
    from teddywatch import autostart

    try:
        return Path(autostart.status().where)
    except autostart.AutostartError:
        return Path(autostart.WINDOWS_RUN_KEY)
