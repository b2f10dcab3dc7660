//! The protobuf wire format, read in place: the only decoding layer under [`crate::proto`].
//!
//! A protobuf message is a sequence of fields, each a varint key (`field_number << 3 |
//! wire_type`) followed by a varint, 8 or 4 fixed bytes, or a varint length and that many
//! bytes (<https://protobuf.dev/programming-guides/encoding/>). [`Fields`] walks one message
//! and yields each field with the absolute file offset of its value, so a length-delimited
//! field (an embedded message, a string, `raw_data`) is a sub-slice of the memory map and
//! never a copy. Every length is checked against the bytes present before it is used; the
//! deprecated group wire types (3 and 4, unused by `onnx.proto`) are refused.

/// The value of one field, as its wire type gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    /// Wire type 0: a varint (int32, int64, uint64, bool, enum).
    Varint(u64),
    /// Wire type 1: 8 little-endian bytes (double, fixed64).
    Fixed64(u64),
    /// Wire type 2: a length-delimited payload (bytes, string, message, packed repeated),
    /// and the absolute offset of its first byte.
    Bytes(&'a [u8], usize),
    /// Wire type 5: 4 little-endian bytes (float, fixed32).
    Fixed32(u32),
}

impl Value<'_> {
    /// The wire type's name, for errors.
    pub(crate) fn wire_name(&self) -> &'static str {
        match self {
            Value::Varint(_) => "varint",
            Value::Fixed64(_) => "64-bit",
            Value::Bytes(..) => "length-delimited",
            Value::Fixed32(_) => "32-bit",
        }
    }
}

/// One field of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field<'a> {
    /// The field number.
    pub number: u64,
    /// Its value.
    pub value: Value<'a>,
    /// Absolute offset of the field's key, for errors.
    pub at: usize,
}

/// What is wrong with the wire encoding at some offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireFault {
    /// A varint, fixed-width value or length-delimited payload runs past the end of its
    /// enclosing message (or of the file).
    #[error("a value runs past the end of its message ({needed} bytes needed, {available} left)")]
    Truncated {
        /// Bytes the value needs.
        needed: u64,
        /// Bytes left in the message.
        available: u64,
    },
    /// A varint longer than 10 bytes (the most a 64-bit value takes).
    #[error("a varint is longer than 10 bytes")]
    VarintTooLong,
    /// A wire type protobuf does not define (6, 7), or a group (3, 4: deprecated, and unused
    /// by `onnx.proto`).
    #[error("wire type {0} is not used by onnx.proto")]
    WireType(u8),
    /// Field number 0, which protobuf reserves.
    #[error("field number 0")]
    FieldZero,
}

/// A fault and the absolute offset where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fault {
    /// What is wrong.
    pub fault: WireFault,
    /// Where.
    pub at: usize,
}

/// Reads a varint from `buf` at `*pos`, advancing it. `base` is the absolute offset of
/// `buf[0]`, for errors.
pub(crate) fn varint(buf: &[u8], pos: &mut usize, base: usize) -> Result<u64, Fault> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some(&b) = buf.get(*pos) else {
            return Err(Fault {
                fault: WireFault::Truncated {
                    needed: i + 1,
                    available: i,
                },
                at: base + *pos,
            });
        };
        *pos += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Fault {
        fault: WireFault::VarintTooLong,
        at: base + *pos,
    })
}

/// The fields of one message, in order. Yields `Err` once on malformed input and then stops.
#[derive(Debug, Clone)]
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    /// The fields of the message `buf`, whose first byte is at absolute offset `base`.
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Fields<'a> {
        Fields {
            buf,
            pos: 0,
            base,
            failed: false,
        }
    }

    fn take(&mut self, n: u64) -> Result<(&'a [u8], usize), Fault> {
        let available = (self.buf.len() - self.pos) as u64;
        if n > available {
            return Err(Fault {
                fault: WireFault::Truncated {
                    needed: n,
                    available,
                },
                at: self.base + self.pos,
            });
        }
        // `n <= available`, which is a `usize`.
        let n = n as usize;
        let at = self.pos;
        self.pos += n;
        Ok((&self.buf[at..at + n], self.base + at))
    }

    fn field(&mut self) -> Result<Field<'a>, Fault> {
        let at = self.base + self.pos;
        let key = varint(self.buf, &mut self.pos, self.base)?;
        let number = key >> 3;
        if number == 0 {
            return Err(Fault {
                fault: WireFault::FieldZero,
                at,
            });
        }
        let value = match key & 7 {
            0 => Value::Varint(varint(self.buf, &mut self.pos, self.base)?),
            1 => {
                let (b, _) = self.take(8)?;
                Value::Fixed64(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            }
            2 => {
                let len = varint(self.buf, &mut self.pos, self.base)?;
                let (b, off) = self.take(len)?;
                Value::Bytes(b, off)
            }
            5 => {
                let (b, _) = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
            }
            other => {
                return Err(Fault {
                    fault: WireFault::WireType(other as u8),
                    at,
                })
            }
        };
        Ok(Field { number, value, at })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, Fault>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = self.field();
        self.failed = r.is_err();
        Some(r)
    }
}

/// The varints of a packed repeated field, in order.
pub(crate) fn varints(buf: &[u8], base: usize) -> impl Iterator<Item = Result<u64, Fault>> + '_ {
    let mut pos = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= buf.len() {
            return None;
        }
        let r = varint(buf, &mut pos, base);
        failed = r.is_err();
        Some(r)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_wire_type_with_offsets() {
        // field 1 varint 300; field 2 bytes "ab"; field 3 fixed32; field 4 fixed64.
        let mut m = vec![
            0x08, 0xac, 0x02, 0x12, 2, b'a', b'b', 0x1d, 1, 0, 0, 0, 0x21,
        ];
        m.extend_from_slice(&7u64.to_le_bytes());
        let f: Vec<_> = Fields::new(&m, 100).collect::<Result<_, _>>().unwrap();
        assert_eq!(f[0].value, Value::Varint(300));
        assert_eq!(f[1].value, Value::Bytes(b"ab", 105));
        assert_eq!(f[2].value, Value::Fixed32(1));
        assert_eq!(f[3].value, Value::Fixed64(7));
        assert_eq!((f[0].at, f[3].at), (100, 112));
    }

    #[test]
    fn refuses_truncation_long_varints_groups_and_field_zero() {
        let first = |m: &[u8]| Fields::new(m, 0).next().unwrap().unwrap_err().fault;
        assert!(matches!(
            first(&[0x12, 5, 1]),
            WireFault::Truncated {
                needed: 5,
                available: 1
            }
        ));
        assert!(matches!(first(&[0x08]), WireFault::Truncated { .. }));
        assert_eq!(
            first(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1]),
            WireFault::VarintTooLong
        );
        assert_eq!(first(&[0x0b]), WireFault::WireType(3));
        assert_eq!(first(&[0x00, 0x00]), WireFault::FieldZero);
        // A length near u64::MAX does not overflow.
        let mut m = vec![0x12];
        m.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(matches!(first(&m), WireFault::Truncated { .. }));
    }

    #[test]
    fn packed_varints() {
        let b = [1, 0xac, 0x02, 5];
        let v: Vec<u64> = varints(&b, 0).collect::<Result<_, _>>().unwrap();
        assert_eq!(v, [1, 300, 5]);
        assert!(varints(&[0x80], 0).any(|v| v.is_err()));
    }
}
