//! A component (or core module) with a custom section appended: the same code, other
//! bytes, so another digest. The host keys plugin versions, artifacts and aggregate
//! state by digest, so tests, benches and xtask tasks use this to upload "a new version
//! that behaves the same", or to make the server compile something again. The one
//! place the workspace writes such a section, with wasm-encoder rather than the
//! hand-written LEB128 writers it used to copy.

pub use wasm_encoder;

use wasm_encoder::{CustomSection, Section};

/// `wasm` followed by a custom section `name` holding `payload`. Custom sections are
/// allowed anywhere in modules and components and ignored by the runtime.
pub fn with_custom_section(wasm: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = wasm.to_vec();
    CustomSection {
        name: name.into(),
        data: payload.into(),
    }
    .append_to(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_section_is_id_size_name_payload() {
        let out = with_custom_section(b"\0asm", "ab", b"xyz");
        assert_eq!(out, b"\0asm\x00\x06\x02abxyz");
    }

    #[test]
    fn sizes_past_127_take_two_bytes() {
        let payload = vec![7u8; 200];
        let out = with_custom_section(&[], "n", &payload);
        // 1 (name length) + 1 (name) + 200 = 202 = 0b1_1001010: LEB128 0xca 0x01.
        assert_eq!(&out[..5], &[0x00, 0xca, 0x01, 0x01, b'n']);
        assert_eq!(out.len(), 3 + 2 + 200);
    }
}
