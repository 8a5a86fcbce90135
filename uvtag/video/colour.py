"""YUV 4:2:0 (planar or NV12) to RGB in torch, on any device, the way libswscale converts it.

Decoders hand out Y'CbCr pictures: a full-resolution luma plane and two chroma planes of
ceil(H/2) x ceil(W/2) samples (planar yuv420p: U and V apart; NV12, NVDEC's output: U and V
interleaved in one plane). `yuv420_to_rgb` turns them into uint8 RGB with BT.601 or BT.709
coefficients, limited (Y 16-235, C 16-240) or full range, as tensors on whatever device they
are on, so that a GPU decoder's frames never visit the host.

What libswscale does (FFmpeg 8, the reformat PyAV's `to_ndarray(format="rgb24")` runs), and so
what this module does:

- Even heights take swscale's unscaled yuv2rgb path (x86 SIMD). Each chroma sample serves its
  2 x 2 block of pixels (no interpolation), and the matrix runs in 16-bit fixed point: every
  term is a value scaled by 8 times a coefficient of 2^13, keeping the high 16 bits of the
  product (a floor), the terms added and the sum clamped to 0..255. `fixed_point` derives the
  coefficients from swscale's own table exactly as swscale does; the result is bit-identical
  to swscale's RGB (measured on every case of tests/test_colour.py: max difference 0).
- Odd heights take swscale's general scaler, which resamples the ceil(H/2) chroma rows to H rows
  with a bilinear filter. Here the rows are interpolated linearly at the centre-aligned
  positions (j + 0.5) * ceil(H/2) / H - 0.5 (clamped at the edges), then the same fixed-point
  matrix runs on them. That is close to swscale but not equal: tests/test_colour.py states the
  measured bound.
- Frame tags: BT.709 frames (AVCOL_SPC_BT709) use the BT.709 matrix; unspecified, BT.470BG
  and SMPTE 170M use BT.601, as swscale does; full range comes from the JPEG colour range or a
  yuvj pixel format. Other matrices (BT.2020, FCC, SMPTE 240M, YCgCo) are not handled
  (`spec_of` returns None, so the caller keeps the decoder's own conversion).
- Rotation (`rotate`) is the CPU path's: the displayed picture is the stored one turned by the
  frame's rotation, counter-clockwise in quarter turns (numpy's rot90 on H x W).

Layouts: planes are [..., H, W] (any leading dimensions, e.g. frames); RGB comes out channel
first, [..., 3, H, W].
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

MATRICES = ("bt601", "bt709")
RANGES = ("limited", "full")
# libswscale's ff_yuv2rgb_coeffs (16.16 fixed point, for limited-range chroma): crv, cbu, cgu, cgv
_SWS_COEFFS = {"bt601": (104597, 132201, 25675, 53279), "bt709": (117489, 138438, 13975, 34925)}
_AVCOL_SPC_BT709 = 1
_BT601_TAGS = (2, 5, 6)  # AVCOL_SPC_UNSPECIFIED, AVCOL_SPC_BT470BG, AVCOL_SPC_SMPTE170M
_AVCOL_RANGE_JPEG = 2
_CHROMA_OFFSET = 128 * 8  # chroma is centred on 128, scaled by 8 like every sample


@dataclasses.dataclass(frozen=True)
class ColourSpec:
    """How a Y'CbCr picture maps to RGB: the matrix ("bt601" | "bt709") and the range
    ("limited": Y 16-235 and C 16-240, or "full": 0-255)."""

    matrix: str = "bt601"
    range: str = "limited"

    def __post_init__(self) -> None:
        if self.matrix not in MATRICES:
            raise ValueError(f"unknown matrix {self.matrix!r}; choose one of {', '.join(MATRICES)}")
        if self.range not in RANGES:
            raise ValueError(f"unknown range {self.range!r}; choose one of {', '.join(RANGES)}")


@dataclasses.dataclass(frozen=True)
class FixedPoint:
    """swscale's 16-bit coefficients: a term is floor((8 * sample - offset) * coefficient / 2^16)."""

    y: int
    y_offset: int
    vr: int  # V -> R
    ub: int  # U -> B
    ug: int  # U -> G (negative)
    vg: int  # V -> G (negative)


def _round_to_int16(value: int) -> int:
    """swscale's roundToInt16: a value scaled by 2^16 rounded to an integer (floor of value + 1/2)."""
    return (value + (1 << 15)) >> 16


def _scaled(value: int, num: int, den: int) -> int:
    """C's integer `value * num / den` (truncates toward zero, also for negative values)."""
    q = abs(value) * num // den
    return q if value >= 0 else -q


@dataclasses.dataclass(frozen=True)
class Yuv420Frame:
    """A decoded 4:2:0 picture as stored: uint8 planes Y [H, W], U and V [ceil(H/2), ceil(W/2)]
    (numpy arrays or tensors), how they map to RGB, and the display rotation still to apply."""

    y: Any
    u: Any
    v: Any
    spec: ColourSpec
    rotation: int = 0

    def to_rgb(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """uint8 [3, H', W'] RGB on `device`, rotated for display (planes copied there as uint8)."""
        y, u, v = (_to_device(p, torch.device(device)) for p in (self.y, self.u, self.v))
        return rotate(yuv420_to_rgb(y, u, v, self.spec), self.rotation)


def _to_device(plane, device: torch.device) -> torch.Tensor:
    """A uint8 plane onto `device`: pinned and non-blocking from the host to CUDA."""
    plane = plane if isinstance(plane, torch.Tensor) else torch.from_numpy(plane)
    if device.type == "cuda" and plane.device.type == "cpu":
        return plane.pin_memory().to(device, non_blocking=True)
    return plane.to(device)


def fixed_point(spec: ColourSpec) -> FixedPoint:
    """The integer coefficients swscale derives for `spec` (default contrast, saturation, brightness).

    Limited range stretches luma by 255/219 and removes its offset of 16; full range narrows the
    chroma coefficients (tabulated for limited chroma) by 224/255.
    """
    crv, cbu, cgu, cgv = _SWS_COEFFS[spec.matrix]
    cgu, cgv = -cgu, -cgv
    cy, oy = 1 << 16, 0
    if spec.range == "limited":
        cy, oy = cy * 255 // 219, 16 << 16
    else:
        crv, cbu, cgu, cgv = (_scaled(c, 224, 255) for c in (crv, cbu, cgu, cgv))
    fix = lambda c: _round_to_int16(c * (1 << 13))  # noqa: E731
    return FixedPoint(y=fix(cy), y_offset=_round_to_int16(oy * 8), vr=fix(crv), ub=fix(cbu), ug=fix(cgu), vg=fix(cgv))


def spec_of(colorspace: int, color_range: int, pix_fmt: str = "yuv420p") -> ColourSpec | None:
    """The ColourSpec swscale uses for a frame's tags (FFmpeg's AVColorSpace / AVColorRange
    numbers, as PyAV's `frame.colorspace` and `frame.color_range` give them); None for a matrix
    this module does not handle."""
    if colorspace == _AVCOL_SPC_BT709:
        matrix = "bt709"
    elif colorspace in _BT601_TAGS:
        matrix = "bt601"
    else:
        return None
    full = color_range == _AVCOL_RANGE_JPEG or pix_fmt.startswith("yuvj")
    return ColourSpec(matrix, "full" if full else "limited")


def _term(samples: torch.Tensor, offset: int, coefficient: int) -> torch.Tensor:
    """floor((samples - offset) * coefficient / 2^16) on int32 samples already scaled by 8."""
    return ((samples - offset) * coefficient) >> 16


def _linear(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Resample float `x` along `dim` to `size` samples: linear, centre-aligned, clamped at the edges."""
    count = x.shape[dim]
    pos = (torch.arange(size, dtype=torch.float64, device=x.device) + 0.5) * count / size - 0.5
    pos = pos.clamp(0, count - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=count - 1)
    shape = [1] * x.ndim
    shape[dim] = size
    frac = (pos - lo).to(x.dtype).reshape(shape)
    return x.index_select(dim, lo) * (1 - frac) + x.index_select(dim, hi) * frac


def _upsample_chroma(plane: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[..., ceil(H/2), ceil(W/2)] chroma -> int32 [..., H, W] chroma scaled by 8.

    Even heights: each sample serves its 2 x 2 block. Odd heights: rows are interpolated
    linearly; columns too when the width is odd as well (swscale then interpolates chroma to
    the full width), otherwise each sample serves two columns (see the module docstring).
    """
    if height % 2 == 0:
        wide = plane.repeat_interleave(2, dim=-1)[..., :width]
        return wide.repeat_interleave(2, dim=-2).to(torch.int32) * 8
    x = plane.to(torch.float32)
    if width % 2:
        x = _linear(x, width, x.ndim - 1)
    else:
        x = x.repeat_interleave(2, dim=-1)
    x = _linear(x, height, x.ndim - 2)
    return torch.round(x * 8).to(torch.int32)


def _check_planes(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple[int, int]:
    for name, plane in (("y", y), ("u", u), ("v", v)):
        if plane.dtype != torch.uint8:
            raise ValueError(f"plane {name} must be uint8, got {plane.dtype}")
        if plane.ndim < 2:
            raise ValueError(f"plane {name} must be [..., H, W], got shape {tuple(plane.shape)}")
    height, width = int(y.shape[-2]), int(y.shape[-1])
    chroma = (*y.shape[:-2], (height + 1) // 2, (width + 1) // 2)
    if tuple(u.shape) != chroma or tuple(v.shape) != chroma:
        raise ValueError(f"4:2:0 chroma of a {width}x{height} picture must be {chroma}, "
                         f"got u {tuple(u.shape)} and v {tuple(v.shape)}")
    return height, width


def yuv420_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, spec: ColourSpec = ColourSpec(),
                  dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """Planar 4:2:0 -> RGB, channel first, on the planes' device.

    Args:
        y: uint8 [..., H, W] luma.
        u, v: uint8 [..., ceil(H/2), ceil(W/2)] chroma (Cb, Cr).
        spec: matrix and range.
        dtype: uint8 (the default), or a float dtype for the same 0..255 levels as floats (what a
            resize that follows wants).

    Returns:
        [..., 3, H, W] RGB.
    """
    height, width = _check_planes(y, u, v)
    k = fixed_point(spec)
    luma = _term(y.to(torch.int32) * 8, k.y_offset, k.y)
    cb = _upsample_chroma(u, height, width)
    cr = _upsample_chroma(v, height, width)
    r = luma + _term(cr, _CHROMA_OFFSET, k.vr)
    g = luma + _term(cb, _CHROMA_OFFSET, k.ug) + _term(cr, _CHROMA_OFFSET, k.vg)
    b = luma + _term(cb, _CHROMA_OFFSET, k.ub)
    return torch.stack([r, g, b], dim=-3).clamp_(0, 255).to(dtype)


def nv12_to_rgb(y: torch.Tensor, uv: torch.Tensor, spec: ColourSpec = ColourSpec(),
                dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """NV12 (luma plane plus one interleaved chroma plane, NVDEC's output) -> RGB [..., 3, H, W].

    Args:
        y: uint8 [..., H, W].
        uv: uint8 [..., ceil(H/2), 2 * ceil(W/2)], Cb and Cr alternating along each row.
    """
    if uv.ndim < 2 or uv.shape[-1] % 2:
        raise ValueError(f"an NV12 chroma plane has an even number of bytes a row, got shape {tuple(uv.shape)}")
    return yuv420_to_rgb(y, uv[..., 0::2], uv[..., 1::2], spec, dtype)


def rotate(rgb: torch.Tensor, degrees: int) -> torch.Tensor:
    """Turn [..., 3, H, W] pictures as the CPU path does for a frame's display rotation."""
    k = (int(degrees) // 90) % 4
    return torch.rot90(rgb, k=k, dims=(-2, -1)) if k else rgb
