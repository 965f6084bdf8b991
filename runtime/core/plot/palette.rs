//! Series colours: the Okabe–Ito palette and `#rrggbb` parsing.

use super::PlotError;

/// An sRGB colour.
pub(super) type Rgb = (u8, u8, u8);

/// Colour names accepted by [`SeriesStyle::color`](super::SeriesStyle::color), in the order series
/// take them. Okabe & Ito (2008), "Color Universal Design": distinguishable
/// under the common colour-vision deficiencies; yellow comes last because it
/// is faint on white.
pub const PALETTE_NAMES: [&str; 8] = [
    "blue",
    "vermillion",
    "green",
    "orange",
    "sky",
    "purple",
    "yellow",
    "black",
];

pub(super) const PALETTE_RGB: [Rgb; 8] = [
    (0x00, 0x72, 0xB2),
    (0xD5, 0x5E, 0x00),
    (0x00, 0x9E, 0x73),
    (0xE6, 0x9F, 0x00),
    (0x56, 0xB4, 0xE9),
    (0xCC, 0x79, 0xA7),
    (0xF0, 0xE4, 0x42),
    (0x00, 0x00, 0x00),
];

/// Reference lines are grey unless coloured, so they read as annotation.
pub(super) const REFERENCE_GREY: Rgb = (0x55, 0x55, 0x55);

/// `"#rrggbb"` (case-insensitive) or a name from [`PALETTE_NAMES`].
pub(super) fn parse_color(text: &str) -> Result<Rgb, PlotError> {
    let unknown = || PlotError::UnknownColor(text.to_string());
    let lower = text.trim().to_lowercase();
    if let Some(index) = PALETTE_NAMES.iter().position(|name| *name == lower) {
        return Ok(PALETTE_RGB[index]);
    }
    let hex = lower.strip_prefix('#').ok_or_else(unknown)?;
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unknown());
    }
    let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| unknown());
    Ok((channel(0)?, channel(2)?, channel(4)?))
}
