"""Progressive JPEGs at 1/8 scale: keep only the scans such a decode reads.

A progressive JPEG stores its coefficients in many scans: first the DC term of every 8x8 block,
then the AC terms in bands and refinements. Decoded at 1/8 scale (JPEG draft mode, what teddywatch
asks for on camera-sized photos), each full-resolution block becomes one pixel computed from its DC
term alone, so libjpeg's work on the luma AC scans (most of the file) is thrown away. Subsampled
chroma is different: libjpeg scales it with a 2x2 IDCT instead of upsampling, which reads AC terms,
so those scans stay.

`eighth_scale_scans(data)` returns the file with the AC scans of full-resolution components left
out, or None when the file is not a plain progressive JPEG this understands. Two details make the
result identical to decoding the whole file (tests/test_imaging.py checks pixel equality):
  * every DC scan is kept, refinements included;
  * libjpeg smooths blocks whose AC terms never arrived (an estimate for half-loaded images), so
    the first AC entries of quantisation tables used only by the dropped components are set to 0,
    which turns that smoothing off (libjpeg skips it for such tables); those AC terms are all
    zero here, so no value changes.
"""

from __future__ import annotations

import re

_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"
_SOF_PROGRESSIVE_HUFFMAN = 0xC2
_OTHER_SOF = {0xC0, 0xC1, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_SOS, _DQT = 0xDA, 0xDB
# Entropy-coded data ends at the first 0xFF that is neither byte stuffing (FF00) nor RSTn.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")
# Zigzag positions of the AC terms libjpeg's block smoothing looks at (Q01 Q10 Q20 Q11 Q02 ...);
# a zero in any of the first five disables smoothing.
_SMOOTHING_ENTRIES = (1, 2, 3, 4, 5)


def eighth_scale_scans(data: bytes) -> bytes | None:
    """The scans a 1/8-scale decode of this progressive JPEG uses, or None (decode it all)."""
    try:
        segments, full_res_tables = _filtered_segments(data)
    except (IndexError, ValueError):
        return None
    if segments is None:
        return None
    return b"".join(_without_smoothing(seg, full_res_tables) if seg[1] == _DQT else seg
                    for seg in segments)


def _filtered_segments(data: bytes) -> tuple[list[bytes] | None, set[int]]:
    if not data.startswith(_SOI):
        return None, set()
    out, pos, end_of_data = [_SOI], 2, len(data)
    full_res: set[int] | None = None  # component ids at the largest sampling factors
    only_full_res_tables: set[int] = set()
    while True:
        if data[pos] != 0xFF:
            return None, set()
        while data[pos] == 0xFF:  # optional fill bytes before a marker
            pos += 1
        marker = data[pos]
        pos += 1
        if marker == _EOI[1]:
            break
        length = int.from_bytes(data[pos:pos + 2], "big")
        seg_end = pos + length
        if length < 2 or seg_end > end_of_data:
            return None, set()
        if marker in _OTHER_SOF:
            return None, set()  # baseline, lossless, arithmetic-coded: nothing to gain here
        if marker == _SOF_PROGRESSIVE_HUFFMAN:
            full_res, only_full_res_tables = _components(data[pos + 2:seg_end])
        if marker == _SOS:
            if full_res is None:
                return None, set()
            count = data[pos + 2]
            components = {data[pos + 3 + 2 * i] for i in range(count)}
            spectral_start = data[pos + 3 + 2 * count]
            found = _SCAN_END.search(data, seg_end)
            scan_end = found.start() if found else end_of_data
            if found is None:
                return None, set()  # truncated: let the full decode report it
            if spectral_start == 0 or not components <= full_res:
                out.append(data[pos - 2:scan_end])
            pos = scan_end
            continue
        out.append(data[pos - 2:seg_end])
        pos = seg_end
    if full_res is None or not only_full_res_tables:
        return None, set()  # without turning smoothing off the result would differ
    out.append(_EOI)
    return out, only_full_res_tables


def _components(frame: bytes) -> tuple[set[int], set[int]]:
    """(ids of full-resolution components, quant tables used by no other component)."""
    count = frame[5]
    sampling = {}
    for i in range(count):
        ident, factors, table = frame[6 + 3 * i:9 + 3 * i]
        sampling[ident] = (factors >> 4, factors & 0x0F, table)
    h_max = max(h for h, _, _ in sampling.values())
    v_max = max(v for _, v, _ in sampling.values())
    full = {c for c, (h, v, _) in sampling.items() if (h, v) == (h_max, v_max)}
    full_tables = {t for c, (_, _, t) in sampling.items() if c in full}
    shared = {t for c, (_, _, t) in sampling.items() if c not in full}
    return full, full_tables - shared


def _without_smoothing(segment: bytes, tables: set[int]) -> bytes:
    """A DQT segment with the smoothing-relevant AC entries of `tables` set to zero."""
    body = bytearray(segment[4:])
    pos = 0
    while pos < len(body):
        precision, table = body[pos] >> 4, body[pos] & 0x0F
        pos += 1
        width = 2 if precision else 1
        if table in tables:
            for entry in _SMOOTHING_ENTRIES:
                body[pos + entry * width:pos + (entry + 1) * width] = bytes(width)
        pos += 64 * width
    return segment[:4] + bytes(body)
