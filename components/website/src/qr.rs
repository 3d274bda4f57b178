//! The invite QR code: a PNG of an account link, black modules on a white square, at the
//! size and error correction upstream's website uses.

use anyhow::{Context, Result};
use qrcode::{Color, EcLevel, QrCode};

/// Width and height of the image in pixels.
const SIZE: usize = 384;
/// The white margin around the code, in pixels (the code is centered in what remains).
const PADDING: usize = 6;

/// The file name of the invite code of `mail_domain`, as upstream names it.
pub fn file_name(mail_domain: &str) -> String {
    format!("qr-chatmail-invite-{mail_domain}.png")
}

/// The link a Delta Chat app scans to create an account on the relay at `mail_domain`.
pub fn invite_link(mail_domain: &str) -> String {
    format!("DCACCOUNT:https://{mail_domain}/new")
}

/// A grayscale PNG of a QR code (error correction H: readable with a fifth of it hidden)
/// holding `text`.
pub fn png(text: &str) -> Result<Vec<u8>> {
    let code = QrCode::with_error_correction_level(text, EcLevel::H)
        .with_context(|| format!("making a QR code of {text:?}"))?;
    let modules = code.width();
    let colors = code.to_colors();
    let scale = (SIZE - 2 * PADDING) / modules;
    let offset = (SIZE - modules * scale) / 2;
    let mut pixels = vec![u8::MAX; SIZE * SIZE];
    for (index, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (row, column) = (index / modules, index % modules);
        for y in 0..scale {
            let start = (offset + row * scale + y) * SIZE + offset + column * scale;
            pixels[start..start + scale].fill(0);
        }
    }
    let mut out = Vec::new();
    let side = u32::try_from(SIZE).context("QR image size")?;
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .context("writing the QR code's PNG header")?;
    writer
        .write_image_data(&pixels)
        .context("writing the QR code's PNG data")?;
    writer.finish().context("finishing the QR code's PNG")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails by panicking

    use super::*;

    /// Reads the PNG back and decodes the QR code in it.
    fn decode(data: &[u8]) -> String {
        let decoder = png::Decoder::new(std::io::Cursor::new(data));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!((info.width, info.height), (384, 384));
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        let width = info.width as usize;
        let mut image =
            rqrr::PreparedImage::prepare_from_greyscale(width, width, |x, y| pixels[y * width + x]);
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the image");
        let (meta, content) = grids[0].decode().unwrap();
        assert_eq!(meta.ecc_level, 2, "error correction H (quirc numbers it 2)");
        content
    }

    #[test]
    fn the_invite_code_decodes_to_the_account_link() {
        let link = invite_link("chat.example.org");
        assert_eq!(link, "DCACCOUNT:https://chat.example.org/new");
        assert_eq!(decode(&png(&link).unwrap()), link);
        assert_eq!(
            file_name("chat.example.org"),
            "qr-chatmail-invite-chat.example.org.png"
        );
    }

    #[test]
    fn a_long_link_still_fits_and_decodes() {
        let link = format!("DCACCOUNT:https://{}.example.org/new", "a".repeat(200));
        assert_eq!(decode(&png(&link).unwrap()), link);
    }
}
