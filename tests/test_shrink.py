"""Memory bounded by pixels: every mode is decoded to a small 8-bit RGB image, full-size frames
wait for the byte budget, and the pixel limit comes from `[decode] max_megapixels`."""

from __future__ import annotations

import csv
import io
import platform
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from teddywatch import heap, imaging, shrink
from teddywatch.config import ConfigError, load_config
from teddywatch.imaging import DecodeError, decode
from teddywatch.pixelbudget import BUDGET, PixelBudget

SIZE = (1600, 1200)        # min_size 224: reduced by 4 (1200 // 224 = 5) to 400×300
REDUCED = (400, 300)


def noise(mode: str, size: tuple[int, int] = SIZE) -> Image.Image:
    """A real image of `mode`, with varied pixels (so a wrong conversion shows)."""
    rng = np.random.default_rng(7)
    w, h = size
    if mode == "1":
        return Image.fromarray(rng.integers(0, 2, (h, w), dtype=np.uint8) * 255, "L").convert("1")
    if mode == "P":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").quantize(64)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))  # I;16
    if mode == "I":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.int32), "I")
    if mode == "F":
        return Image.fromarray(rng.uniform(0, 255, (h, w)).astype(np.float32), "F")
    bands = len(Image.new(mode, (1, 1)).getbands())
    return Image.fromarray(rng.integers(0, 256, (h, w, bands), dtype=np.uint8).squeeze(), mode)


# (what is saved, the format, the mode Pillow decodes it as)
MODES = {
    "rgba.png": ("RGBA", "PNG", "RGBA"),
    "la.png": ("LA", "PNG", "LA"),
    "p.png": ("P", "PNG", "P"),
    "p-transparent.gif": ("P", "GIF", "P"),
    "i16.png": ("I;16", "PNG", "I;16"),
    "i32.tif": ("I", "TIFF", "I"),
    "float.tif": ("F", "TIFF", "F"),
    "cmyk.tif": ("CMYK", "TIFF", "CMYK"),
    "bilevel.png": ("1", "PNG", "1"),
    "rgba.tif": ("RGBA", "TIFF", "RGBA"),
}


def write(tmp_path: Path, name: str) -> tuple[Path, Image.Image]:
    mode, fmt, _ = MODES[name]
    image = noise(mode)
    extra = {"transparency": 0} if name == "p-transparent.gif" else {}
    path = tmp_path / name
    image.save(path, fmt, **extra)
    return path, image


@pytest.mark.parametrize("name", sorted(MODES))
def test_every_mode_decodes_to_a_small_rgb_image(tmp_path: Path, name: str) -> None:
    path, _ = write(tmp_path, name)
    with Image.open(path) as raw:
        assert raw.mode == MODES[name][2]  # the decoder really sees that mode
    out = decode(path, 224)
    assert out.mode == "RGB"
    assert out.size == REDUCED
    assert BUDGET.used == 0  # the full-size frame's bytes are given back


@pytest.mark.parametrize("name", ["rgba.png", "p-transparent.gif", "i16.png", "cmyk.tif",
                                  "bilevel.png"])
def test_strips_give_the_pixels_of_converting_whole_then_reducing(
        tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shrink, "STRIP_BYTES", 100_000)  # many strips, one partial at the end
    path, _ = write(tmp_path, name)
    with Image.open(path) as full:
        full.load()
        expected = shrink.to_rgb(full).reduce(4)
    assert np.array_equal(np.asarray(decode(path, 224)), np.asarray(expected))


def test_alpha_is_flattened_onto_white_before_reducing(tmp_path: Path) -> None:
    image = Image.new("RGBA", SIZE, (0, 0, 0, 0))  # fully transparent black
    image.save(tmp_path / "clear.png")
    out = decode(tmp_path / "clear.png", 224)
    assert out.size == REDUCED and out.getextrema() == ((255, 255),) * 3


def test_small_images_of_any_mode_are_not_reduced(tmp_path: Path) -> None:
    noise("I;16", (300, 250)).save(tmp_path / "small.png")
    out = decode(tmp_path / "small.png", 224)
    assert (out.mode, out.size) == ("RGB", (300, 250))


def test_frame_bytes_follow_pillows_layout() -> None:
    assert shrink.frame_bytes((6000, 6000), "RGBA") == 144_000_000
    assert shrink.frame_bytes((6000, 6000), "RGB") == 144_000_000  # 4 bytes a pixel in Pillow
    assert shrink.frame_bytes((100, 10), "I;16") == 2000
    assert shrink.frame_bytes((100, 10), "P") == 1000


# --- the byte budget --------------------------------------------------------------------------

def test_budget_lets_frames_that_fit_in_together_and_a_big_one_alone() -> None:
    budget = PixelBudget(100)
    first = budget.acquire(60)
    assert budget.acquire(40) == 40  # fits beside the first
    budget.release(40)
    entered = threading.Event()

    def big() -> None:
        granted = budget.acquire(500)  # larger than the budget: waits until it is alone
        entered.set()
        budget.release(granted)

    thread = threading.Thread(target=big)
    thread.start()
    assert not entered.wait(0.2)  # still waiting while the first frame is held
    budget.release(first)
    assert entered.wait(10)
    thread.join(10)
    assert budget.used == 0 and budget.peak == 100


def test_budget_is_given_back_when_decoding_fails(tmp_path: Path) -> None:
    data = io.BytesIO()
    noise("RGBA").save(data, "PNG")
    (tmp_path / "cut.png").write_bytes(data.getvalue()[:len(data.getvalue()) // 2])
    with pytest.raises(DecodeError):
        decode(tmp_path / "cut.png")
    assert BUDGET.used == 0


# --- the pixel limit, from the config ---------------------------------------------------------

def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"[[watch]]\npath = \"{tmp_path}\"\n\n{body}\n", encoding="utf-8")
    return path


def test_config_sets_the_limit_and_the_refusal_quotes_it(tmp_path: Path,
                                                         user_env: dict[str, str]) -> None:
    config = write_config(tmp_path, "[decode]\nmax_megapixels = 0.5")
    assert load_config(config).decode.max_megapixels == 0.5
    noise("RGBA", (1000, 600)).save(tmp_path / "big.png")     # 0.6 Mpx: refused
    noise("RGB", (600, 600)).save(tmp_path / "fits.png")      # 0.36 Mpx: classified
    done = run_cli("--config", str(config), "classify", "--format", "csv",
                   str(tmp_path / "big.png"), str(tmp_path / "fits.png"), env=user_env)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    rows = {Path(row["path"]).name: row for row in csv.DictReader(io.StringIO(done.stdout))}
    assert rows["fits.png"]["status"] != "error"
    assert rows["big.png"]["status"] == "error"
    assert ("image too large: 1000×600 = 0.6 Mpx over the 0.5 Mpx limit "
            "(decode.max_megapixels in the config)") in done.stdout


def test_limit_setter_drives_both_guards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after
    imaging.set_max_megapixels(0.05)
    assert imaging.max_pixels() == 50_000
    noise("L", (300, 200)).save(tmp_path / "a.png")
    with pytest.raises(DecodeError, match="over the 0.05 Mpx limit"):
        decode(tmp_path / "a.png")


@pytest.mark.parametrize("value, shown", [("0", "0"), ("-3", "-3"), ("1001", "1001"),
                                          ('"big"', "'big'"), ("true", "True")])
def test_max_megapixels_is_validated_at_the_edge(tmp_path: Path, value: str, shown: str) -> None:
    config = write_config(tmp_path, f"[decode]\nmax_megapixels = {value}")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    message = str(caught.value)
    assert message.startswith(f"{config}: decode.max_megapixels: expected ")
    assert "megapixels" in message or "a number" in message
    assert f"(got {shown})" in message


def test_misspelt_decode_key_is_named(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[decode]\nmax_megapixel = 50")
    with pytest.raises(ConfigError, match=r"decode\.max_megapixel: unknown key; did you mean "
                                          r"'decode\.max_megapixels'\?"):
        load_config(config)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_frames_go_back_to_the_system_on_glibc() -> None:
    assert heap.release_big_blocks()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_app_shares_malloc_arenas_and_a_decoder_can_trim_on_glibc() -> None:
    assert heap.few_arenas(1) and heap.trim()
