"""Put the default ONNX model and the example config inside regular wheels.

They live at the top of the repository (models/, config.example.toml); teddywatch.resources looks
for them in teddywatch/_data/ when installed from a wheel, and in the checkout otherwise.
"""

from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SHIPPED = ("models/bears-int8.onnx", "models/bears-int8.json", "models/bears-int8.anchors.npz",
           "models/bears-int8.checkset.npz", "config.example.toml")


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if version == "editable":
            return
        root = Path(self.root)
        for name in SHIPPED:
            if not (root / name).exists():
                raise FileNotFoundError(f"{name} is missing; build the default model first (make model)")
            build_data["force_include"][str(root / name)] = f"teddywatch/_data/{name}"
