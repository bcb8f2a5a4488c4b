//! Writing JSON straight into a byte buffer, for the few large objects the proxy prints on
//! every request (the Responses response object and its output items). Keys are fixed byte
//! strings written as they are, and a string value that needs no escape (almost all of them)
//! is copied in one piece after a word-at-a-time scan, where `serde_json` looks every key and
//! every byte up in its escape table. The output is byte for byte what `serde_json` prints
//! for the same value (tested below, and in the callers' tests against `serde_json::Value`).

use serde::Serialize;
use serde_json::value::RawValue;

/// Something that writes itself as one JSON value.
pub(crate) trait WriteJson {
    fn write_json(&self, out: &mut Vec<u8>);

    /// The value as a [`RawValue`], so a `Serialize` impl can hand it to any serializer
    /// (`serde_json`'s writer copies it; its `Value` builder parses it).
    fn to_raw(&self) -> Box<RawValue> {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        // Every writer here prints valid UTF-8 JSON: keys are ASCII literals and strings come
        // from `&str`; the fallback keeps a serializer from failing on a bug.
        String::from_utf8(out)
            .ok()
            .and_then(|text| RawValue::from_string(text).ok())
            .unwrap_or_else(|| RawValue::NULL.to_owned())
    }
}

/// `s` as a JSON string literal, escaped exactly as `serde_json` escapes it (only `"`, `\` and
/// control characters; everything else, `/` and non-ASCII included, as it is). The runs between
/// escapes are found eight bytes at a time and copied whole; `serde_json` looks every byte up in
/// its escape table, which made escaping most of the cost of writing a long conversation (its
/// texts are full of newlines).
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    while let Some(i) = next_escape(bytes, start) {
        out.extend_from_slice(&bytes[start..i]);
        escape(out, bytes[i]);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The escape `serde_json` writes for a byte that needs one.
fn escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short: &[u8] = match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        0x08 => b"\\b",
        0x0c => b"\\f",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        _ => {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
            return;
        }
    };
    out.extend_from_slice(short);
}

/// `Some(s)` as a string, `None` as `null`.
pub(crate) fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

pub(crate) fn uint(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

pub(crate) fn opt_uint(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => uint(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

pub(crate) fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// Any other value (floats, client-given objects), through `serde_json`.
pub(crate) fn value<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// `v` through `serde_json` when given, else `default` (literal JSON) as it is.
pub(crate) fn value_or<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: Option<&T>, default: &[u8]) {
    match v {
        Some(v) => value(out, v),
        None => out.extend_from_slice(default),
    }
}

/// An object's fields, a comma before every one but the first; a field whose value is `None`
/// is left out (serde's `skip_serializing_if = "Option::is_none"`).
pub(crate) struct Fields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// Goes on with an object whose opening and first fields `out` already ends with.
    pub(crate) fn resume(out: &'a mut Vec<u8>) -> Self {
        Self { out, first: false }
    }

    /// Starts the field `key` (a literal that needs no escape); its value is written next.
    pub(crate) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub(crate) fn string(&mut self, key: &str, value: &str) {
        string(self.key(key), value);
    }

    pub(crate) fn opt_string(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.string(key, value);
        }
    }

    pub(crate) fn uint(&mut self, key: &str, n: u64) {
        uint(self.key(key), n);
    }

    pub(crate) fn boolean(&mut self, key: &str, b: bool) {
        boolean(self.key(key), b);
    }

    pub(crate) fn opt_uint(&mut self, key: &str, n: Option<u64>) {
        if let Some(n) = n {
            uint(self.key(key), n);
        }
    }

    /// Any other value, through `serde_json`, when given.
    pub(crate) fn opt_value<T: Serialize + ?Sized>(&mut self, key: &str, v: Option<&T>) {
        if let Some(v) = v {
            value(self.key(key), v);
        }
    }

    /// A flattened map's entries, in its order.
    pub(crate) fn extra(&mut self, extra: &serde_json::Map<String, serde_json::Value>) {
        for (key, v) in extra {
            if !self.first {
                self.out.push(b',');
            }
            self.first = false;
            string(self.out, key);
            self.out.push(b':');
            value(self.out, v);
        }
    }

    pub(crate) fn close(self) {
        self.out.push(b'}');
    }
}

/// A JSON array of `items`, each written by `write`.
pub(crate) fn array<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    write: impl Fn(&mut Vec<u8>, T),
) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

/// The index of the first byte at or after `from` that is a `"`, a `\` or a control character
/// (below 0x20), eight bytes at a time: such a byte leaves its high bit set in the word's mask
/// (the classic "has a zero / has a byte less than" word tricks). A borrow can flag a byte
/// above a real match but never below one, so the lowest flag, read little-endian, is exact.
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let less_than = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let rest = bytes.get(from..)?;
    let mut chunks = rest.chunks_exact(8);
    let mut offset = from;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let found = less_than(x, 0x20)
            | zero_byte(x ^ (ONES * u64::from(b'"')))
            | zero_byte(x ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|i| offset + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(s: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_print_as_serde_json_prints_them() {
        let mut cases: Vec<String> = [
            "",
            "plain",
            "exactly8",
            "sixteen bytes ok",
            "quote \" inside",
            "back\\slash",
            "new\nline and\ttab",
            "ünïcødé and emoji 🦀 stay as they are",
            "slash / stays",
            "\u{7f} delete stays",
            "\u{1f}",
            "0123456\"",
            "01234567\"",
            "012345678901234\\",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // Every byte value below 0x80 at every position of a 17-byte string.
        for b in 0u8..0x80 {
            for pos in 0..17 {
                let mut s = vec![b'a'; 17];
                s[pos] = b;
                cases.push(String::from_utf8(s).unwrap());
            }
        }
        for s in cases {
            assert_eq!(written(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn random_strings_print_as_serde_json_prints_them() {
        // A fixed-seed generator over characters of every UTF-8 length, the three that need
        // escaping and a few control characters, at lengths around the scan's 8-byte words.
        let alphabet: Vec<char> = "aZ09 /\"\\\n\t\r\u{0}\u{1f}\u{7f}é€🦀".chars().collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200 {
            let s: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            assert_eq!(written(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn the_escape_scan_finds_what_serde_json_escapes() {
        for b in 0u8..=255 {
            for pos in 0..16 {
                let mut s = vec![b'x'; 16];
                s[pos] = b;
                let expected = (b < 0x20 || b == b'"' || b == b'\\').then_some(pos);
                for from in 0..=pos {
                    assert_eq!(next_escape(&s, from), expected, "byte {b:#x} at {pos}");
                }
                assert_eq!(next_escape(&s, pos + 1), None, "byte {b:#x} at {pos}");
            }
        }
        // The first of several, never a later one, whatever the bytes between (a borrow
        // from a control byte flags the bytes above it).
        for first in 0..16 {
            for second in first + 1..17 {
                let mut s = vec![0x7fu8; 17];
                s[first] = 0x00;
                s[second] = b'"';
                assert_eq!(next_escape(&s, 0), Some(first));
                assert_eq!(next_escape(&s, first + 1), Some(second));
            }
        }
        assert_eq!(next_escape(b"abc", 4), None);
    }

    #[test]
    fn numbers_and_fallbacks() {
        let mut out = Vec::new();
        uint(&mut out, u64::MAX);
        out.push(b' ');
        opt_uint(&mut out, None);
        out.push(b' ');
        boolean(&mut out, false);
        out.push(b' ');
        value(&mut out, &0.5f64);
        out.push(b' ');
        value(&mut out, &f64::NAN);
        out.push(b' ');
        array(&mut out, [1u64, 2], uint);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "18446744073709551615 null false 0.5 null [1,2]"
        );
    }
}
