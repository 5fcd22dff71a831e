//! Pairing offers as QR codes: in the terminal (Unicode half blocks), as SVG, and as PNG
//! (written here: 8-bit grayscale, one zlib stream, CRC-checked chunks).

/// A QR rendering failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct QrError(String);

type Result<T> = std::result::Result<T, QrError>;

fn anyhow_like(e: impl std::fmt::Display) -> QrError {
    QrError(e.to_string())
}
use qrcode::{Color, EcLevel, QrCode};

fn code(text: &str) -> Result<QrCode> {
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| QrError(format!("the offer does not fit a QR code: {e}")))
}

/// The code drawn with Unicode half blocks (two modules per character row), with a quiet zone.
pub fn terminal(text: &str) -> Result<String> {
    Ok(code(text)?
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// An SVG document.
pub fn svg(text: &str) -> Result<String> {
    Ok(code(text)?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(320, 320)
        .quiet_zone(true)
        .build())
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A PNG image, `scale` pixels per module, with a four-module quiet zone.
pub fn png(text: &str, scale: usize) -> Result<Vec<u8>> {
    let c = code(text)?;
    let n = c.width();
    let colors = c.to_colors();
    let quiet = 4;
    let side = (n + 2 * quiet) * scale;
    let mut raw = Vec::with_capacity(side * (side + 1));
    for y in 0..side {
        raw.push(0); // filter: none
        let my = (y / scale).checked_sub(quiet).filter(|m| *m < n);
        for x in 0..side {
            let mx = (x / scale).checked_sub(quiet).filter(|m| *m < n);
            let dark =
                matches!((mx, my), (Some(mx), Some(my)) if colors[my * n + mx] == Color::Dark);
            raw.push(if dark { 0 } else { 255 });
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut z, &raw).map_err(anyhow_like)?;
    let idat = z.finish().map_err(anyhow_like)?;
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(side as u32).to_be_bytes());
    ihdr.extend_from_slice(&(side as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grayscale, deflate, no filter, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_every_form() {
        let text = "hearth-pair:eyJ2IjoxfQ";
        assert!(terminal(text).unwrap().contains('█'));
        assert!(svg(text).unwrap().starts_with("<?xml"));
        let p = png(text, 4).unwrap();
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&p[12..16], b"IHDR");
        assert!(p.ends_with(&[0xae, 0x42, 0x60, 0x82]), "IEND's fixed CRC");
    }
}
