"""Runtime hook: serve `import pillow_heif` from pi_heif, the decode-only build of the same library.

watch.spec bundles pi-heif instead of pillow-heif when the build environment has it: the same
`register_heif_opener()` API and the same libheif + libde265 decoders, without the x265 HEVC
*encoder* (20 MB, GPL) that pillow-heif's wheel links; teddywatch never writes HEIC files.
teddywatch.imaging keeps importing `pillow_heif`. The alias is resolved only when something
imports pillow_heif, so commands that read no images do not load libheif.
"""

import importlib.abc
import importlib.machinery
import sys


class _PiHeifAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201
        if name != "pillow_heif":
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):  # noqa: ANN001, ANN201
        import pi_heif

        self._spec = pi_heif.__spec__
        return pi_heif

    def exec_module(self, module) -> None:  # noqa: ANN001
        module.__spec__ = self._spec  # importlib stamped the alias spec on pi_heif; undo that


sys.meta_path.append(_PiHeifAlias())  # last: a bundled pillow_heif itself would win
