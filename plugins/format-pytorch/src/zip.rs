//! The subset of zip that PyTorch archives use, read from a memory map.
//!
//! PyTorch writes archives with its own `PyTorchStreamWriter` (miniz): every member stored
//! (method 0), data aligned to 64 bytes, zip64 records when the archive or a member exceeds
//! 4 GiB. Re-zipped checkpoints may deflate members (method 8), which `torch.load` reads too.
//! We read exactly that: the end-of-central-directory record (and its zip64 locator and
//! record), the central directory, and each member's local header, following the PKWARE
//! application note (APPNOTE.TXT 6.3.x, sections 4.3.6–4.3.16 and 4.5.3). Encrypted members,
//! other compression methods, multi-disk archives and duplicate names are errors; sizes and
//! offsets come from the central directory and are checked against the file before use.
//!
//! Stored members are slices of the map (no copy). Deflated members are inflated on request
//! into a buffer of exactly their recorded size, and their CRC-32 checked.

use std::collections::HashMap;
use std::ops::Range;

use crate::ArchiveProblem;

/// Signature of the end-of-central-directory record.
const EOCD_SIG: u32 = 0x0605_4b50;
/// Signature of the zip64 end-of-central-directory locator.
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
/// Signature of the zip64 end-of-central-directory record.
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
/// Signature of a central directory file header.
const CENTRAL_SIG: u32 = 0x0201_4b50;
/// Signature of a local file header.
const LOCAL_SIG: u32 = 0x0403_4b50;
/// Fixed part of the end record; the comment (at most 65 535 bytes) follows it.
const EOCD_LEN: usize = 22;
/// Fixed part of a central directory header.
const CENTRAL_LEN: usize = 46;
/// Fixed part of a local header.
const LOCAL_LEN: usize = 30;
/// Header id of the zip64 extended information extra field.
const ZIP64_EXTRA: u16 = 0x0001;

/// How a member's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Stored as is.
    Stored,
    /// Raw deflate (RFC 1951).
    Deflated,
}

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Name as written in the central directory.
    pub name: String,
    /// Compression method.
    pub method: Method,
    /// Where its (possibly compressed) bytes lie in the file.
    pub data: Range<usize>,
    /// Size after decompression.
    pub size: u64,
    /// CRC-32 of the uncompressed bytes.
    pub crc32: u32,
}

/// An archive's members, by name.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    /// Members in central-directory order.
    pub members: Vec<Member>,
    by_name: HashMap<String, usize>,
}

impl Archive {
    /// The member called `name`.
    pub fn get(&self, name: &str) -> Option<&Member> {
        self.by_name.get(name).and_then(|&i| self.members.get(i))
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Whether `head` starts like a zip file (a local header).
pub fn has_magic(head: &[u8]) -> bool {
    head.get(..4) == Some(&LOCAL_SIG.to_le_bytes()[..])
}

/// The name of the first member as far as `head` (a file's first bytes) shows it, and
/// whether it was cut short.
pub fn first_name(head: &[u8]) -> Option<(&[u8], bool)> {
    if !has_magic(head) {
        return None;
    }
    let len = usize::from(u16_at(head, 26)?);
    let visible = head.get(LOCAL_LEN..)?;
    Some(if visible.len() >= len {
        (&visible[..len], false)
    } else {
        (visible, true)
    })
}

/// Reads the central directory of the zip file `file`. `max_directory` caps the central
/// directory's size (it is the archive's header). `done_with` is told the byte ranges of
/// `file` the reading no longer needs, as it goes: each member's local header is read where
/// it lies, between the members' data, and a memory-mapped caller hands those pages back
/// (a page fault of a cached file can map a whole large folio around the header).
pub fn read(
    file: &[u8],
    max_directory: u64,
    done_with: &dyn Fn(std::ops::Range<usize>),
) -> Result<Archive, ArchiveProblem> {
    let eocd = find_eocd(file).ok_or(ArchiveProblem::NoEndRecord)?;
    let field16 = |at| u16_at(file, eocd + at).ok_or(ArchiveProblem::NoEndRecord);
    let field32 = |at| u32_at(file, eocd + at).ok_or(ArchiveProblem::NoEndRecord);
    let disk = field16(4)?;
    let cd_disk = field16(6)?;
    let mut count = u64::from(field16(10)?);
    let mut cd_size = u64::from(field32(12)?);
    let mut cd_offset = u64::from(field32(16)?);
    if disk != 0 && disk != 0xffff || cd_disk != 0 && cd_disk != 0xffff {
        return Err(ArchiveProblem::MultiDisk);
    }
    if count == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
        // APPNOTE 4.3.14–4.3.15: the locator sits just before the end record.
        let bad = ArchiveProblem::BadZip64;
        let loc = eocd.checked_sub(20).ok_or(bad("no zip64 locator"))?;
        if u32_at(file, loc) != Some(ZIP64_LOCATOR_SIG) {
            return Err(bad("no zip64 locator"));
        }
        if u32_at(file, loc + 16) != Some(1) {
            return Err(ArchiveProblem::MultiDisk);
        }
        let rec = u64_at(file, loc + 8).ok_or(bad("truncated locator"))?;
        let rec = usize::try_from(rec).map_err(|_| bad("record offset too large"))?;
        if u32_at(file, rec) != Some(ZIP64_EOCD_SIG) {
            return Err(bad("locator does not point at a zip64 end record"));
        }
        count = u64_at(file, rec + 32).ok_or(bad("truncated zip64 end record"))?;
        cd_size = u64_at(file, rec + 40).ok_or(bad("truncated zip64 end record"))?;
        cd_offset = u64_at(file, rec + 48).ok_or(bad("truncated zip64 end record"))?;
    }
    let outside = ArchiveProblem::DirectoryOutside {
        offset: cd_offset,
        size: cd_size,
    };
    if cd_size > max_directory {
        return Err(outside);
    }
    let cd = usize::try_from(cd_offset)
        .ok()
        .zip(usize::try_from(cd_size).ok())
        .and_then(|(o, s)| file.get(o..o.checked_add(s)?))
        .ok_or(outside)?;
    // Every entry takes at least CENTRAL_LEN bytes, so the count is bounded by the directory
    // size before anything is allocated from it.
    if count > (cd.len() / CENTRAL_LEN) as u64 {
        return Err(ArchiveProblem::BadEntry {
            index: cd.len() as u64 / CENTRAL_LEN as u64,
            reason: "the central directory ends before its declared entry count",
        });
    }
    let mut archive = Archive::default();
    let mut at = 0usize;
    let mut released = 0usize;
    for index in 0..count {
        let (member, next) = central_entry(file, cd, at, index)?;
        at = next;
        // Members are usually in file order: everything before this one's data is done with.
        if member.data.start > released {
            done_with(released..member.data.start);
            released = member.data.start;
        }
        if archive.by_name.contains_key(&member.name) {
            return Err(ArchiveProblem::DuplicateMember(member.name));
        }
        archive
            .by_name
            .insert(member.name.clone(), archive.members.len());
        archive.members.push(member);
    }
    Ok(archive)
}

/// Finds the end record: the last signature whose comment length reaches exactly the end of
/// the file, else the last signature at all (some writers miscount the comment).
fn find_eocd(file: &[u8]) -> Option<usize> {
    let lowest = file.len().saturating_sub(EOCD_LEN + 0xffff);
    let last = file.len().checked_sub(EOCD_LEN)?;
    let mut fallback = None;
    for at in (lowest..=last).rev() {
        if u32_at(file, at) == Some(EOCD_SIG) {
            let comment = usize::from(u16_at(file, at + 20)?);
            if at + EOCD_LEN + comment == file.len() {
                return Some(at);
            }
            fallback.get_or_insert(at);
        }
    }
    fallback
}

/// Parses the central-directory entry at `cd[at..]` and its local header; returns the member
/// and the offset of the next entry.
fn central_entry(
    file: &[u8],
    cd: &[u8],
    at: usize,
    index: u64,
) -> Result<(Member, usize), ArchiveProblem> {
    let bad = |reason| ArchiveProblem::BadEntry { index, reason };
    let truncated = || bad("truncated central directory entry");
    if u32_at(cd, at) != Some(CENTRAL_SIG) {
        return Err(bad("bad central directory signature"));
    }
    let flags = u16_at(cd, at + 8).ok_or_else(truncated)?;
    let method = u16_at(cd, at + 10).ok_or_else(truncated)?;
    let crc32 = u32_at(cd, at + 16).ok_or_else(truncated)?;
    let mut compressed = u64::from(u32_at(cd, at + 20).ok_or_else(truncated)?);
    let mut size = u64::from(u32_at(cd, at + 24).ok_or_else(truncated)?);
    let name_len = usize::from(u16_at(cd, at + 28).ok_or_else(truncated)?);
    let extra_len = usize::from(u16_at(cd, at + 30).ok_or_else(truncated)?);
    let comment_len = usize::from(u16_at(cd, at + 32).ok_or_else(truncated)?);
    let mut local = u64::from(u32_at(cd, at + 42).ok_or_else(truncated)?);
    let name_start = at + CENTRAL_LEN;
    let name = cd
        .get(name_start..name_start + name_len)
        .ok_or_else(truncated)?;
    let extra = cd
        .get(name_start + name_len..name_start + name_len + extra_len)
        .ok_or_else(truncated)?;
    let next = name_start + name_len + extra_len + comment_len;
    if next > cd.len() {
        return Err(truncated());
    }
    // Names are UTF-8 when flag bit 11 is set and CP437 otherwise; PyTorch names are ASCII,
    // so anything that is not UTF-8 is refused rather than transcoded.
    let name = String::from_utf8(name.to_vec()).map_err(|_| bad("member name is not UTF-8"))?;

    // APPNOTE 4.5.3: the zip64 extra field holds, in this order, only the fields whose
    // 32-bit values are saturated.
    if size == 0xffff_ffff || compressed == 0xffff_ffff || local == 0xffff_ffff {
        let mut z = zip64_extra(extra).ok_or(ArchiveProblem::BadZip64("missing extra field"))?;
        let mut next_field = |v: &mut u64| -> Result<(), ArchiveProblem> {
            if *v == 0xffff_ffff {
                *v = u64_at(z, 0).ok_or(ArchiveProblem::BadZip64("extra field too short"))?;
                z = z.get(8..).unwrap_or_default();
            }
            Ok(())
        };
        next_field(&mut size)?;
        next_field(&mut compressed)?;
        next_field(&mut local)?;
    }
    if flags & 1 != 0 {
        return Err(ArchiveProblem::Encrypted(name));
    }
    let method = match method {
        0 => Method::Stored,
        8 => Method::Deflated,
        other => {
            return Err(ArchiveProblem::UnsupportedCompression {
                name,
                method: other,
            })
        }
    };
    if method == Method::Stored && compressed != size {
        return Err(bad(
            "stored member whose compressed and uncompressed sizes differ",
        ));
    }

    // The local header repeats name and extra field with its own lengths.
    let local_at = usize::try_from(local).map_err(|_| bad("local header offset too large"))?;
    if u32_at(file, local_at) != Some(LOCAL_SIG) {
        return Err(bad("bad local header signature"));
    }
    let local_name = usize::from(u16_at(file, local_at + 26).ok_or_else(truncated)?);
    let local_extra = usize::from(u16_at(file, local_at + 28).ok_or_else(truncated)?);
    let start = local_at
        .checked_add(LOCAL_LEN + local_name + local_extra)
        .ok_or_else(|| bad("local header offset too large"))?;
    let outside = || ArchiveProblem::DataOutside {
        name: name.clone(),
        offset: start as u64,
        size: compressed,
    };
    let end = usize::try_from(compressed)
        .ok()
        .and_then(|c| start.checked_add(c))
        .filter(|&end| end <= file.len())
        .ok_or_else(outside)?;
    Ok((
        Member {
            name,
            method,
            data: start..end,
            size,
            crc32,
        },
        next,
    ))
}

/// The payload of the zip64 extended information field in `extra`, if present.
fn zip64_extra(mut extra: &[u8]) -> Option<&[u8]> {
    while extra.len() >= 4 {
        let id = u16_at(extra, 0)?;
        let len = usize::from(u16_at(extra, 2)?);
        let body = extra.get(4..4 + len)?;
        if id == ZIP64_EXTRA {
            return Some(body);
        }
        extra = &extra[4 + len..];
    }
    None
}

/// Why a member's contents could not be produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentProblem {
    /// Inflating failed or produced a different number of bytes than recorded.
    Inflate(&'static str),
    /// The CRC-32 differs from the recorded one.
    Crc,
}

impl ContentProblem {
    /// One-line description.
    pub fn reason(self) -> &'static str {
        match self {
            ContentProblem::Inflate(r) => r,
            ContentProblem::Crc => "CRC-32 does not match the central directory",
        }
    }
}

/// The most bytes one byte of a deflate stream can inflate to.
pub const MAX_DEFLATE_RATIO: usize = 1032;

/// Inflates a deflated member into a buffer of exactly its recorded size and checks its
/// CRC-32. The caller has bounded `member.size`.
pub fn inflate(file: &[u8], member: &Member) -> Result<Vec<u8>, ContentProblem> {
    let input = file
        .get(member.data.clone())
        .ok_or(ContentProblem::Inflate("data outside the file"))?;
    let size = usize::try_from(member.size)
        .map_err(|_| ContentProblem::Inflate("recorded size does not fit in memory"))?;
    // Deflate emits at most 258 bytes per 2-bit code, 1032 per input byte: a recorded size
    // beyond that is a lie, refused before the buffer for it is allocated (found by fuzzing:
    // 2 KiB declaring 2 GiB).
    if size
        > input
            .len()
            .saturating_mul(MAX_DEFLATE_RATIO)
            .saturating_add(64)
    {
        return Err(ContentProblem::Inflate(
            "recorded size is more than its deflated bytes can inflate to",
        ));
    }
    // One spare byte tells "more output than recorded" apart from "exactly the size".
    let mut out = vec![0u8; size.saturating_add(1)];
    let n = miniz_oxide::inflate::decompress_slice_iter_to_slice(
        &mut out,
        std::iter::once(input),
        false,
        true,
    )
    .map_err(|status| match status {
        miniz_oxide::inflate::TINFLStatus::HasMoreOutput => {
            ContentProblem::Inflate("inflates to more than its recorded size")
        }
        _ => ContentProblem::Inflate("invalid deflate stream"),
    })?;
    if n != size {
        return Err(ContentProblem::Inflate(if n > size {
            "inflates to more than its recorded size"
        } else {
            "inflates to less than its recorded size"
        }));
    }
    out.truncate(size);
    if crc32(&out) != member.crc32 {
        return Err(ContentProblem::Crc);
    }
    Ok(out)
}

/// The bytes of a stored member, CRC-checked (used for the small records: pickles, version).
pub fn stored_checked<'f>(file: &'f [u8], member: &Member) -> Result<&'f [u8], ContentProblem> {
    let data = file
        .get(member.data.clone())
        .ok_or(ContentProblem::Inflate("data outside the file"))?;
    if crc32(data) != member.crc32 {
        return Err(ContentProblem::Crc);
    }
    Ok(data)
}

/// CRC-32 (ISO-HDLC, reflected polynomial 0xEDB88320), as zip uses it.
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    /// The ranges reading is done with come in file order, never overlap, and end where a
    /// member's data starts: a mapped caller never hands back bytes still to be read.
    #[test]
    fn done_with_ranges_precede_each_members_data() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deep.pt");
        let file = std::fs::read(path).unwrap();
        let seen = std::cell::RefCell::new(Vec::new());
        let archive = read(&file, 1 << 20, &|r| seen.borrow_mut().push(r)).unwrap();
        let seen = seen.into_inner();
        assert!(!seen.is_empty());
        let starts: std::collections::BTreeSet<usize> =
            archive.members.iter().map(|m| m.data.start).collect();
        let mut at = 0;
        for r in &seen {
            assert_eq!(r.start, at, "{seen:?}");
            assert!(r.end > r.start && starts.contains(&r.end), "{seen:?}");
            at = r.end;
        }
    }

    #[test]
    fn garbage_is_no_end_record() {
        assert_eq!(
            read(b"PK\x03\x04 not really", 1 << 20, &|_| ()).unwrap_err(),
            ArchiveProblem::NoEndRecord
        );
        assert_eq!(
            read(b"", 1 << 20, &|_| ()).unwrap_err(),
            ArchiveProblem::NoEndRecord
        );
    }

    #[test]
    fn end_record_pointing_outside() {
        let mut f = b"PK\x03\x04".to_vec();
        f.extend_from_slice(&EOCD_SIG.to_le_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
        f.extend_from_slice(&100u32.to_le_bytes()); // size
        f.extend_from_slice(&1000u32.to_le_bytes()); // offset
        f.extend_from_slice(&[0, 0]);
        assert_eq!(
            read(&f, 1 << 20, &|_| ()).unwrap_err(),
            ArchiveProblem::DirectoryOutside {
                offset: 1000,
                size: 100
            }
        );
    }
}
