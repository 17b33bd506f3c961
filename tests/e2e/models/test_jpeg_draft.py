"""JPEG draft decoding is kept only because it agrees with full decoding on >= 99 % of real photos."""

from __future__ import annotations

from bench.jpeg_draft_agreement import large_jpeg_variants, measure


def test_draft_decoding_agrees_with_full_decoding() -> None:
    result = measure(large_jpeg_variants(per_photo=40))
    print(f"{result.images} images: {100 * result.agreement:.1f} % agreement, "
          f"{result.full_ms:.1f} -> {result.draft_ms:.1f} ms per image")
    assert result.images >= 200
    assert result.agreement >= 0.99
