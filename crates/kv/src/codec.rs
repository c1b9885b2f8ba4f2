//! The primitive encodings shared by requests, responses, engine records and
//! snapshots.
//!
//! - `uvarint`: an unsigned LEB128 integer, 7 bits per byte, least
//!   significant group first, high bit set on every byte but the last; at
//!   most 10 bytes for a `u64`. Only the shortest form is accepted (no
//!   trailing zero groups), so every value has exactly one encoding; forms
//!   that overflow 64 bits are refused.
//! - `bytes`: a `uvarint` length followed by that many bytes.
//! - `bool`: one byte, `0` or `1`; any other value is refused.
//! - `u8`: one byte.
//!
//! The [`Reader`] never panics and never allocates more than the input it
//! was given: every length is checked against the bytes that remain.

use crate::error::DecodeError;

/// Appends a `uvarint`.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The number of bytes `put_uvarint` writes for `v`.
pub(crate) fn uvarint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends a length-prefixed byte string.
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// The number of bytes `put_bytes` writes for `b`.
pub(crate) fn bytes_len(b: &[u8]) -> usize {
    uvarint_len(b.len() as u64) + b.len()
}

/// Appends a bool as one byte.
pub(crate) fn put_bool(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

/// A cursor over an encoded buffer. Every method fails with a
/// [`DecodeError`] instead of reading past the end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The offset of the next byte.
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated {
            offset: self.pos as u64,
        })?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        let offset = self.pos as u64;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::InvalidBool { offset, value }),
        }
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let offset = self.pos as u64;
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            let group = u64::from(b & 0x7f);
            // The tenth byte may only carry the single top bit.
            if i == 9 && (b & 0x7f) > 1 {
                return Err(DecodeError::VarintOverflow { offset });
            }
            v |= group << (7 * i);
            if b & 0x80 == 0 {
                // A last byte of 0 after others is an overlong form: one
                // value, one encoding.
                if b == 0 && i > 0 {
                    return Err(DecodeError::OverlongVarint { offset });
                }
                return Ok(v);
            }
        }
        Err(DecodeError::VarintOverflow { offset })
    }

    /// A `uvarint` that must fit a `usize` and not exceed `max`.
    pub(crate) fn count(&mut self, max: usize) -> Result<usize, DecodeError> {
        let offset = self.pos as u64;
        let v = self.uvarint()?;
        if v > max as u64 {
            return Err(DecodeError::LengthTooLarge {
                offset,
                length: v,
                max: max as u64,
            });
        }
        Ok(v as usize)
    }

    /// Exactly `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                offset: self.buf.len() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A length-prefixed byte string, borrowed.
    pub(crate) fn bytes_ref(&mut self) -> Result<&'a [u8], DecodeError> {
        let offset = self.pos as u64;
        let n = self.uvarint()?;
        if n > self.remaining() as u64 {
            return Err(DecodeError::LengthTooLarge {
                offset,
                length: n,
                max: self.remaining() as u64,
            });
        }
        self.take(n as usize)
    }

    /// A length-prefixed byte string, copied.
    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        Ok(self.bytes_ref()?.to_vec())
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(DecodeError::TrailingBytes {
                offset: self.pos as u64,
                count: self.remaining() as u64,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uvarint_edges() {
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::MAX / 2, u64::MAX] {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            assert_eq!(out.len(), uvarint_len(v), "len of {v}");
            let mut r = Reader::new(&out);
            assert_eq!(r.uvarint().unwrap(), v);
            r.finish().unwrap();
        }
    }

    #[test]
    fn uvarint_overflow_refused() {
        // Eleven continuation bytes.
        let buf = [0xffu8; 11];
        assert!(matches!(
            Reader::new(&buf).uvarint(),
            Err(DecodeError::VarintOverflow { .. })
        ));
        // Ten bytes whose last carries more than the top bit.
        let mut buf = [0xffu8; 10];
        buf[9] = 0x02;
        assert!(matches!(
            Reader::new(&buf).uvarint(),
            Err(DecodeError::VarintOverflow { .. })
        ));
    }

    #[test]
    fn overlong_uvarint_refused() {
        assert!(matches!(
            Reader::new(&[0x80, 0x00]).uvarint(),
            Err(DecodeError::OverlongVarint { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x81, 0x80, 0x00]).uvarint(),
            Err(DecodeError::OverlongVarint { .. })
        ));
    }

    #[test]
    fn bytes_length_past_end_refused() {
        let mut out = Vec::new();
        put_uvarint(&mut out, 1_000_000);
        out.extend_from_slice(b"abc");
        assert!(matches!(
            Reader::new(&out).bytes(),
            Err(DecodeError::LengthTooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn uvarint_round_trip(v: u64) {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            prop_assert_eq!(out.len(), uvarint_len(v));
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.uvarint().unwrap(), v);
            prop_assert!(r.finish().is_ok());
        }
    }
}
