//! The pass: which chunks of a tensor pair are read, from where, in what order, and what is
//! kept on the way.
//!
//! Two paths give the same bits. The *fused* path applies when both tensors expose their
//! stored bytes ([`crate::WeightSource::raw`]) as BF16, F16 or F32: the kernels decode
//! straight from the memory map, one window of [`RELEASE_CHUNKS`] chunks per work item, and
//! each window's pages are handed back once it is read. Anything else takes the *buffered* path:
//! [`crate::WeightSource::read_f32`] into a chunk buffer per thread, then the f32 kernel.
//!
//! Besides the moments, a pass can keep what later stages need from the same bytes while
//! they are in cache ([`Taps`]): calibration samples, a BF16 ULP histogram, and the windows
//! themselves for an observer ([`WindowObserver`]). The observer is how file hashing rides
//! along without the pass knowing about it: the pass hands over each whole window it
//! streamed, once per window (never per element), before the window's pages are released.

use rayon::prelude::*;

#[cfg(target_endian = "little")]
use super::kernels::f32_bytes;
use super::kernels::Stored;
use super::magnitudes::Magnitudes;
use super::samples::{f32_le_bytes, is_sampled, sampled_chunks};
use super::{Moments, Samples, CHUNK};
use crate::direct::AlignedBuf;
use crate::ulp::{self, UlpStats};
use crate::{DirectReads, Dtype, Error, MappedFile, RawTensor, Result, Side};

/// Reads a whole tensor (`numel` elements) as f32 (for metrics that need
/// [`crate::Needs::Tensors`]), in [`CHUNK`]-sized pieces converted in parallel.
pub fn read_tensor(side: Side<'_>, numel: usize) -> Result<Vec<f32>> {
    let mut out = vec![0f32; numel];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .try_for_each(|(c, chunk)| side.read_f32(c * CHUNK, chunk))?;
    Ok(out)
}

/// Streams tensors `a` and `b` (same element count `numel`) once, in [`CHUNK`]-sized pieces,
/// and returns their [`Moments`].
///
/// Chunks run in parallel on the current rayon pool; partial results are merged in chunk
/// order, so the result does not depend on the thread count. When both sources expose the
/// stored bytes ([`crate::WeightSource::raw`]) as BF16, F16 or F32, the kernel decodes
/// straight from the memory map, and every [`RELEASE_CHUNKS`] chunks the pages read are
/// handed back ([`crate::MappedFile::release`]), so resident memory stays at a few megabytes
/// per thread however large the model; the result is bit-identical to the buffered path.
pub fn pair_moments(a: Side<'_>, b: Side<'_>, numel: usize) -> Result<Moments> {
    Ok(pair_pass(a, b, numel, &Taps::default())?.moments)
}

/// What a full pass ([`pair_pass`]) keeps of the data it streams, besides the moments, while
/// that data is in cache: nothing is read twice.
#[derive(Clone, Copy, Default)]
pub struct Taps<'a> {
    /// Keep the [`Samples`] of this budget (as [`pair_moments_sampled`] would choose them).
    pub samples: Option<usize>,
    /// Histogram the BF16 ULP distances of the chunks a subsample of this budget would
    /// choose (when both tensors are stored as BF16 and expose their bytes).
    pub ulp: Option<usize>,
    /// Hand each window of stored bytes the pass streams to this observer (see
    /// [`WindowObserver`]).
    pub observer: Option<&'a dyn WindowObserver>,
    /// Keep each side's [`Magnitudes`] (largest finite |x|, NaN and ±∞ seen), on a full pass.
    pub magnitudes: bool,
    /// Whether the pass may read cold tensors with `O_DIRECT` rather than through the map
    /// ([`DirectReads`]; the same results either way).
    pub direct: DirectReads,
}

impl std::fmt::Debug for Taps<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Taps")
            .field("samples", &self.samples)
            .field("ulp", &self.ulp)
            .field("observer", &self.observer.map(|_| "…"))
            .field("magnitudes", &self.magnitudes)
            .field("direct", &self.direct)
            .finish()
    }
}

/// Watches the stored bytes a full pass streams: [`WindowObserver::window`] is called with
/// each window of up to [`RELEASE_CHUNKS`] chunks of each tensor, as a slice of the file's
/// memory map, right before the window's pages are handed back. [`crate::FileHashers`]
/// implements it, so that a file's hash is taken from the bytes the comparison reads anyway.
///
/// Only the fused path of a full pass calls it: a subsample ([`pair_moments_sampled`]) reads
/// scattered chunks, and the buffered path reads through [`crate::WeightSource::read_f32`],
/// not from a map. An observer must therefore not count on seeing every byte (the file
/// hashers finish what they were not shown, [`crate::FileHasher::finish`]). Windows of one
/// pass arrive from several threads, in no particular order.
pub trait WindowObserver: Sync {
    /// `bytes`, `file`'s bytes at offset `at` (from its map, or read directly into a buffer:
    /// [`DirectReads`]), were just streamed by a pass.
    fn window(&self, file: &MappedFile, at: usize, bytes: &[u8]);
}

/// The result of [`pair_pass`].
#[derive(Debug, Clone, PartialEq)]
pub struct PairPass {
    /// Moments of the whole pair.
    pub moments: Moments,
    /// The subsample asked for by [`Taps::samples`].
    pub samples: Option<Samples>,
    /// The ULP statistics asked for by [`Taps::ulp`], when they apply.
    pub ulp: Option<UlpStats>,
    /// Each side's magnitudes (a, b), when [`Taps::magnitudes`] asked for them and the pass
    /// read every element.
    pub magnitudes: Option<[Magnitudes; 2]>,
}

/// [`pair_moments`] on a deterministic subsample of at most `budget` elements (but at least
/// one chunk): `s = ⌊budget / CHUNK⌋` chunks evenly strided through the tensor (sample `k`
/// is chunk `⌊k·C / s⌋` of `C`), or every chunk when the tensor fits. The choice depends on
/// `numel` and `budget` only, never on threads. For calibration samples (null
/// distributions), whose statistic a subsample estimates without bias at a fraction of the
/// cost of reading both tensors whole.
pub fn pair_moments_sampled(
    a: Side<'_>,
    b: Side<'_>,
    numel: usize,
    budget: usize,
) -> Result<Moments> {
    pair_moments_sampled_with(a, b, numel, budget, DirectReads::Auto)
}

/// [`pair_moments_sampled`], reading its chunks with `O_DIRECT` where `direct` says so
/// ([`DirectReads`]; the same moments either way).
pub fn pair_moments_sampled_with(
    a: Side<'_>,
    b: Side<'_>,
    numel: usize,
    budget: usize,
    direct: DirectReads,
) -> Result<Moments> {
    let taps = Taps {
        direct,
        ..Taps::default()
    };
    stream(a, b, numel, budget, &taps).map(|p| p.moments)
}

/// [`pair_moments`], keeping what `taps` asks for on the way (see [`Taps`]).
pub fn pair_pass(a: Side<'_>, b: Side<'_>, numel: usize, taps: &Taps<'_>) -> Result<PairPass> {
    stream(a, b, numel, usize::MAX, taps)
}

/// Chunks per work item and page release of the fused path (2 Mi elements: 4 MiB of BF16
/// per side): large enough that the `madvise` calls and TLB shoot-downs cost little, small
/// enough to split big tensors across threads and keep resident memory at a few tens of MiB.
pub const RELEASE_CHUNKS: usize = 128;

/// Windows the fused pass asks the kernel to read ahead of the one it decodes
/// ([`crate::MappedFile::will_need`]): 4 × 4 MiB per side.
pub const PREFETCH_WINDOWS: usize = 4;

thread_local! {
    /// The last window of a fused pass this thread read: the tensor's address and window.
    static LAST_WINDOW: std::cell::Cell<(usize, usize)> =
        const { std::cell::Cell::new((0, usize::MAX)) };
}

/// Whether this thread's previous window was window `w − 1` of the same tensor (`bytes`), and
/// records window `w` as its last. Only decides how much read-ahead to ask for: a wrong
/// answer costs speed, never a result.
fn follows_last_window(bytes: &[u8], w: usize) -> bool {
    let at = bytes.as_ptr() as usize;
    LAST_WINDOW.with(|last| {
        let (t, prev) = last.replace((at, w));
        t == at && prev.wrapping_add(1) == w
    })
}

/// `side`'s bytes of elements `first .. end` (`width` bytes each), read directly into `buf`.
fn read_window<'b>(
    side: &RawTensor<'_>,
    [first, end, width]: [usize; 3],
    buf: &'b mut AlignedBuf,
) -> Option<&'b [u8]> {
    let part = side.bytes.get(first * width..end * width)?;
    let at = side.file.offset_of(part)?;
    side.file.read_direct(at, part.len(), buf)
}

/// Where a fused pass's window takes the bytes of a side read directly (`crate::direct`).
enum Bytes<'r> {
    /// The window's bytes of each side, read at once; `None`: that side reads the map.
    Window([Option<&'r [u8]>; 2]),
    /// Buffers to read each chunk into (a subsample's scattered chunks).
    Chunks(&'r mut [AlignedBuf; 2]),
}

/// The bytes of a chunk (`mapped`, a slice of the map) from `read`, a window's bytes read
/// directly in which the chunk starts at `at`; `mapped` itself when the side reads the map.
fn from_read<'x>(read: Option<&'x [u8]>, mapped: &'x [u8], at: usize) -> Option<&'x [u8]> {
    match read {
        Some(r) => r.get(at..)?.get(..mapped.len()),
        None => Some(mapped),
    }
}

/// Both tensors' stored bytes, when the fused path applies.
struct Fused<'a> {
    stored: Stored,
    width: usize,
    a: RawTensor<'a>,
    b: RawTensor<'a>,
}

impl<'a> Fused<'a> {
    fn of(a: Side<'a>, b: Side<'a>, numel: usize) -> Option<Fused<'a>> {
        let (ra, rb) = (a.raw()?, b.raw()?);
        let stored = Stored::of(ra.dtype).filter(|_| ra.dtype == rb.dtype)?;
        let width = stored.width();
        let bytes = numel.checked_mul(width)?;
        (ra.bytes.len() == bytes && rb.bytes.len() == bytes).then_some(Fused {
            stored,
            width,
            a: ra,
            b: rb,
        })
    }

    /// The stored bytes of elements `start .. start + len` on both sides, or `None` outside
    /// the tensor.
    fn bytes(&self, start: usize, len: usize) -> Option<(&'a [u8], &'a [u8])> {
        let range = start * self.width..(start + len) * self.width;
        Some((self.a.bytes.get(range.clone())?, self.b.bytes.get(range)?))
    }

    /// Moments of stored bytes from [`Self::bytes`], and with `mags` each side's
    /// [`Magnitudes`] (taken by the kernel on the way where it can, else by a scan of the
    /// chunk while it is in cache).
    fn moments(&self, x: &[u8], y: &[u8], mags: bool) -> (Moments, Option<[Magnitudes; 2]>) {
        stored_moments(self.stored, x, y, mags)
    }

    /// Which sides a pass reads with `O_DIRECT` under `policy` (`crate::direct`). Such a
    /// side's map asks for no read-ahead ([`MappedFile::no_read_ahead`]): what still reads it
    /// (a table check's few blocks) wants a few pages, not the read-ahead window.
    fn direct_sides(&self, policy: DirectReads) -> [bool; 2] {
        let wanted = |side: &RawTensor<'_>| {
            let yes = crate::direct::wanted(side.file, side.bytes, policy);
            if yes {
                side.file.no_read_ahead(side.bytes);
            }
            yes
        };
        let a = wanted(&self.a);
        let b = if std::ptr::eq(self.a.bytes, self.b.bytes) {
            a
        } else {
            wanted(&self.b)
        };
        [a, b]
    }

    /// Hands back the pages of elements `start .. end`.
    fn release(&self, start: usize, end: usize) {
        let range = start * self.width..end * self.width;
        if let (Some(x), Some(y)) = (self.a.bytes.get(range.clone()), self.b.bytes.get(range)) {
            self.a.file.release(x);
            self.b.file.release(y);
        }
    }
}

/// Moments of two runs of stored bytes of `stored` and, with `mags`, each side's
/// [`Magnitudes`] (taken by the kernel on the way where it can, else by a scan of the run
/// while it is in cache). Both sides the same bytes (a pair measured against one side's
/// bytes, known equal): the kernel of a run against itself, same bits.
fn stored_moments(
    stored: Stored,
    x: &[u8],
    y: &[u8],
    mags: bool,
) -> (Moments, Option<[Magnitudes; 2]>) {
    let (m, max) = if std::ptr::eq(x, y) {
        stored.self_moments_max(x, mags)
    } else {
        stored.moments_max(x, y, mags)
    };
    let mags = mags.then(|| {
        [
            Magnitudes::of_stored_max(stored, x, max.map(|[a, _]| a)),
            Magnitudes::of_stored_max(stored, y, max.map(|[_, b]| b)),
        ]
    });
    (m, mags)
}

/// A side's stored bytes when it is an F32 tensor held whole in a map, which the buffered
/// pass hands to the F32 kernel as they are (the kernels read little-endian f32 bytes).
#[cfg(target_endian = "little")]
fn f32_in_place<'a>(side: Side<'a>, numel: usize) -> Option<&'a [u8]> {
    let raw = side.raw()?;
    let whole = raw.bytes.len() == numel.checked_mul(4)?;
    (raw.dtype == Dtype::F32 && whole).then_some(raw.bytes)
}

/// A side's stored elements to reduce in the fused kernels when its rows are stored in
/// another order than presented ([`crate::WeightSource::stored_rows`]: GGUF's RoPE rows) — or,
/// against such a side, in the order presented ([`crate::WeightSource::raw`],
/// [`crate::WeightSource::blocks`]). Elements come in units (one float, or a Q8_0 block of
/// 32), and rows are whole units.
struct Gather<'a> {
    dtype: Dtype,
    /// Elements and bytes per unit.
    unit: (usize, usize),
    bytes: &'a [u8],
    /// Elements per row.
    cols: usize,
    /// The stored row of each presented row; `None`: stored as presented.
    order: Option<Vec<usize>>,
}

impl<'a> Gather<'a> {
    /// The stored bytes of `raw`, `unit` as given, in rows of `cols` (`order`) or as
    /// presented, when they are whole units of exactly `numel` elements.
    fn new(
        raw: RawTensor<'a>,
        unit: (usize, usize),
        cols: usize,
        order: Option<Vec<usize>>,
        numel: usize,
    ) -> Option<Gather<'a>> {
        let (e, w) = unit;
        let rows_fit = order.as_ref().is_none_or(|o| {
            cols > 0 && cols.is_multiple_of(e) && o.len().checked_mul(cols) == Some(numel)
        });
        let whole = numel.is_multiple_of(e) && raw.bytes.len() == (numel / e).checked_mul(w)?;
        (rows_fit && whole).then_some(Gather {
            dtype: raw.dtype,
            unit,
            bytes: raw.bytes,
            cols,
            order,
        })
    }

    /// A side's stored bytes, elements per row and row order: its rows in another order
    /// ([`crate::WeightSource::stored_rows`]), else `presented`'s bytes as one row.
    fn layout(
        side: Side<'a>,
        numel: usize,
        presented: impl FnOnce(&Side<'a>) -> Option<RawTensor<'a>>,
    ) -> Option<(RawTensor<'a>, usize, Option<Vec<usize>>)> {
        Some(match side.stored_rows() {
            Some(rows) => (rows.raw, rows.cols, Some(rows.order)),
            None => (presented(&side)?, numel.max(1), None),
        })
    }

    /// A float side (F32, F16, BF16), and its kernel's dtype.
    fn float(side: Side<'a>, numel: usize) -> Option<(Gather<'a>, Stored)> {
        let (raw, cols, order) = Gather::layout(side, numel, Side::raw)?;
        let stored = Stored::of(raw.dtype)?;
        Some((
            Gather::new(raw, (1, stored.width()), cols, order, numel)?,
            stored,
        ))
    }

    /// A side of Q8_0 blocks.
    fn q8_0(side: Side<'a>, numel: usize) -> Option<Gather<'a>> {
        let unit = (Q8_0_ELEMENTS, super::kernels::Q8_0_BLOCK);
        let (raw, cols, order) = Gather::layout(side, numel, Side::blocks)?;
        (raw.dtype == Dtype::Q8_0).then_some(())?;
        Gather::new(raw, unit, cols, order, numel)
    }

    /// Both sides as floats, when they are stored as the same float dtype and at least one
    /// has its rows in another order (else the fused pass applies, or neither).
    fn pair(a: Side<'a>, b: Side<'a>, numel: usize) -> Option<(Gather<'a>, Gather<'a>, Stored)> {
        let ((ga, stored), (gb, _)) = (Gather::float(a, numel)?, Gather::float(b, numel)?);
        let permuted = ga.order.is_some() || gb.order.is_some();
        (ga.dtype == gb.dtype && permuted).then_some((ga, gb, stored))
    }

    /// The stored bytes of presented elements `start .. start + len` (whole units): a slice of
    /// the map when they are stored as presented, else their rows' pieces gathered into
    /// `buf`. `None` outside the tensor or off a unit boundary.
    fn get<'b>(&'b self, start: usize, len: usize, buf: &'b mut Vec<u8>) -> Option<&'b [u8]> {
        let (e, w) = self.unit;
        let end = start.checked_add(len)?;
        if !start.is_multiple_of(e) || !len.is_multiple_of(e) {
            return None;
        }
        let Some(order) = &self.order else {
            return self.bytes.get(start / e * w..end / e * w);
        };
        buf.clear();
        let mut pos = start;
        while pos < end {
            let (row, col) = (pos / self.cols, pos % self.cols);
            let take = (end - pos).min(self.cols - col);
            let from = order.get(row)?.checked_mul(self.cols)?.checked_add(col)?;
            buf.extend_from_slice(self.bytes.get(from / e * w..(from + take) / e * w)?);
            pos += take;
        }
        Some(buf)
    }

    /// Stored float bytes from [`Self::get`] as little-endian f32 bytes (a kept sample, as
    /// the buffered pass keeps them).
    fn f32_le(&self, x: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0f32; x.len() / self.unit.1];
        crate::to_f32(self.dtype, x, 0, &mut out)?;
        Some(f32_le_bytes(&out))
    }
}

/// Elements per Q8_0 block; a chunk ([`CHUNK`]) is whole blocks.
const Q8_0_ELEMENTS: usize = 32;
const _: () = assert!(CHUNK.is_multiple_of(Q8_0_ELEMENTS));

/// A tensor of whole Q8_0 blocks (in element order, [`crate::WeightSource::blocks`], or in
/// rows stored in another order, [`crate::WeightSource::stored_rows`]) against another such
/// tensor or against stored floats (BF16, F16, F32) held whole in a map — a quantised copy
/// against its original, say — which the kernel decodes as it reduces.
struct Q8_0Direct<'a> {
    /// The blocks.
    q: Gather<'a>,
    /// The other side.
    other: Q8_0Other<'a>,
}

/// The other side of a [`Q8_0Direct`] pair.
enum Q8_0Other<'a> {
    /// Q8_0 blocks too (side b).
    Blocks(Gather<'a>),
    /// Stored floats of a dtype, and whether the blocks are side a.
    Floats(Gather<'a>, Stored, bool),
}

impl<'a> Q8_0Direct<'a> {
    fn of(a: Side<'a>, b: Side<'a>, numel: usize) -> Option<Q8_0Direct<'a>> {
        if !numel.is_multiple_of(Q8_0_ELEMENTS) {
            return None;
        }
        let (q, other) = match (Gather::q8_0(a, numel), Gather::q8_0(b, numel)) {
            (Some(q), Some(y)) => (q, Q8_0Other::Blocks(y)),
            (Some(q), None) => {
                let (f, stored) = Gather::float(b, numel)?;
                (q, Q8_0Other::Floats(f, stored, true))
            }
            (None, Some(q)) => {
                let (f, stored) = Gather::float(a, numel)?;
                (q, Q8_0Other::Floats(f, stored, false))
            }
            (None, None) => return None,
        };
        Some(Q8_0Direct { q, other })
    }

    /// Moments of elements `start .. start + len` (whole blocks) and, with `mags`, both
    /// sides' magnitudes, when this CPU has a fused build of the kernel and (with `mags`)
    /// both sides are floats whose values are finite; `None` sends the chunk through the
    /// buffers. A side in rows stored in another order is gathered into its buffer.
    fn moments(
        &self,
        start: usize,
        len: usize,
        mags: bool,
        [buf_q, buf_other]: [&mut Vec<u8>; 2],
    ) -> Option<(Moments, Option<[Magnitudes; 2]>)> {
        if !start.is_multiple_of(Q8_0_ELEMENTS) || !len.is_multiple_of(Q8_0_ELEMENTS) {
            return None;
        }
        let (f, stored, q_first) = match &self.other {
            // The Q8_0 kernel takes no magnitudes (a Q8_0 tensor never asks for them).
            Q8_0Other::Blocks(y) if !mags => {
                let q = self.q.get(start, len, buf_q)?;
                return Some((
                    super::kernels::q8_0s(q, y.get(start, len, buf_other)?)?,
                    None,
                ));
            }
            Q8_0Other::Blocks(_) => return None,
            Q8_0Other::Floats(f, stored, q_first) => (f, *stored, *q_first),
        };
        let q = self.q.get(start, len, buf_q)?;
        let f = f.get(start, len, buf_other)?;
        let (m, max) = super::kernels::q8_0_mixed(q, f, stored, q_first, mags)?;
        let mags = match max {
            // Finite: the largest is all a magnitude scan would add (`of_f32_max` reads no
            // values then). ∞ or NaN: the buffers, where the scan finds which.
            Some(bits) if bits.iter().all(|&b| b < 0x7f80_0000) => {
                Some(bits.map(|b| Magnitudes::of_f32_max(&[], Some(b))))
            }
            Some(_) => return None,
            None => None,
        };
        Some((m, mags))
    }
}

/// What one chunk of a pass yields.
struct ChunkOut {
    /// The chunk's moments.
    moments: Moments,
    /// Its stored bytes (a side, b side), when [`Taps::samples`] keeps the chunk.
    kept: Option<(Vec<u8>, Vec<u8>)>,
    /// Its ULP histogram, when [`Taps::ulp`] asks for one.
    hist: Option<ulp::Histogram>,
    /// Both sides' magnitudes, when [`Taps::magnitudes`] asks for them.
    mags: Option<[Magnitudes; 2]>,
}

/// The pass itself: [`pair_pass`] with `budget = usize::MAX`, [`pair_moments_sampled`]
/// otherwise.
fn stream(
    a: Side<'_>,
    b: Side<'_>,
    numel: usize,
    budget: usize,
    taps: &Taps<'_>,
) -> Result<PairPass> {
    let chunks = numel.div_ceil(CHUNK);
    let (take, chunk_of) = sampled_chunks(numel, budget);
    let sampled = take < chunks;
    let fused = Fused::of(a, b, numel);
    let out_of_range = |start: usize, len: usize| Error::ReadOutOfRange {
        tensor: a
            .source
            .tensors()
            .get(a.index)
            .map_or_else(String::new, |t| t.name.clone()),
        start,
        len,
        numel,
    };
    let span = |c: usize| (c * CHUNK, CHUNK.min(numel - c * CHUNK));
    let keep = |c: usize| taps.samples.is_some_and(|s| is_sampled(numel, s, c));
    let want_mags = taps.magnitudes && !sampled;
    let ulp_budget = taps
        .ulp
        .filter(|_| fused.as_ref().is_some_and(|f| f.stored == Stored::Bf16));
    let partials: Vec<ChunkOut> = if let Some(f) = &fused {
        // Sides read with `O_DIRECT` rather than through the map (cold files too large to
        // stay cached, `crate::direct`): a full pass a window at a time, a subsample a chunk
        // at a time (through the map, each of its scattered chunks would pull in the
        // kernel's read-ahead).
        let direct = f.direct_sides(taps.direct);
        let same = std::ptr::eq(f.a.bytes, f.b.bytes);
        // One work item per window of chunks, read front to back by one thread and then
        // handed back: a window released while another thread still read it would be
        // faulted back in and stay resident.
        let windows = take.div_ceil(RELEASE_CHUNKS);
        let per_window = (0..windows)
            .into_par_iter()
            .map(|w| {
                // The window's elements (every chunk of it on a full pass).
                let first = w * RELEASE_CHUNKS * CHUNK;
                let end = numel.min((w + 1) * RELEASE_CHUNKS * CHUNK);
                if !sampled {
                    // Ask for the next windows while this one is decoded (a thread walks
                    // its share of windows in order): cold files then stream from disk
                    // instead of arriving one page fault at a time.
                    // A thread that read the window before this one asked for all but the
                    // newest already (asking again costs a page-cache lookup per page);
                    // a thread starting a run of windows asks for this one and those ahead.
                    // The windows ahead run past the tensor's end into the bytes that
                    // follow it in each file (`will_need_at` stops at the file's end).
                    // A side read directly asks for nothing: its reads fetch what it needs.
                    let from = if follows_last_window(f.a.bytes, w) {
                        w + PREFETCH_WINDOWS
                    } else {
                        w
                    };
                    let ahead = from * RELEASE_CHUNKS * CHUNK * f.width;
                    let until = (w + 1 + PREFETCH_WINDOWS) * RELEASE_CHUNKS * CHUNK * f.width;
                    for (side, _) in [(&f.a, direct[0]), (&f.b, direct[1])]
                        .into_iter()
                        .filter(|&(_, d)| !d)
                    {
                        if let Some(at) = side.file.offset_of(side.bytes) {
                            side.file.will_need_at(at + ahead, until - ahead);
                        }
                    }
                }
                let ks = w * RELEASE_CHUNKS..take.min((w + 1) * RELEASE_CHUNKS);
                // The chunks of the window, from the map or, for a side read directly, from
                // `Bytes::Window` (that side's bytes of elements `first .. end`) or chunk by
                // chunk into `Bytes::Chunks` (a subsample).
                let run = |mut src: Bytes<'_>| -> Result<Vec<ChunkOut>> {
                    let mut out = Vec::with_capacity(ks.len());
                    for k in ks.clone() {
                        let c = chunk_of(k);
                        let (start, len) = span(c);
                        let (x, y) = f
                            .bytes(start, len)
                            .ok_or_else(|| out_of_range(start, len))?;
                        let (x, y) = match &mut src {
                            Bytes::Window(read) => {
                                let at = (start - first) * f.width;
                                from_read(read[0], x, at)
                                    .zip(from_read(read[1], y, at))
                                    .ok_or_else(|| out_of_range(start, len))?
                            }
                            Bytes::Chunks([ba, bb]) => {
                                // A failed read: the map's bytes.
                                let span = [start, start + len, f.width];
                                let xr = direct[0].then(|| read_window(&f.a, span, ba));
                                let xr = xr.flatten().unwrap_or(x);
                                let yr = if same {
                                    xr
                                } else {
                                    let yr = direct[1].then(|| read_window(&f.b, span, bb));
                                    yr.flatten().unwrap_or(y)
                                };
                                (xr, yr)
                            }
                        };
                        let (m, mags) = f.moments(x, y, want_mags);
                        // Copied now: the window's pages are handed back below.
                        let kept = keep(c).then(|| (x.to_vec(), y.to_vec()));
                        let hist = ulp_budget
                            .filter(|&u| is_sampled(numel, u, c))
                            .map(|_| ulp::histogram(x, y));
                        out.push(ChunkOut {
                            moments: m,
                            kept,
                            hist,
                            mags,
                        });
                    }
                    if !sampled {
                        let read = match src {
                            Bytes::Window(read) => read,
                            Bytes::Chunks(_) => [None, None],
                        };
                        if let (Some(observer), Some((x, y))) =
                            (taps.observer, f.bytes(first, end - first))
                        {
                            for (side, mapped, r) in [(&f.a, x, read[0]), (&f.b, y, read[1])] {
                                if let Some(at) = side.file.offset_of(mapped) {
                                    observer.window(side.file, at, r.unwrap_or(mapped));
                                }
                            }
                        }
                        f.release(first, end);
                    }
                    Ok(out)
                };
                if direct == [false; 2] {
                    return run(Bytes::Window([None, None]));
                }
                crate::direct::with_buffers(|bufs| {
                    let Some(bufs) = bufs else {
                        return run(Bytes::Window([None, None]));
                    };
                    if sampled {
                        return run(Bytes::Chunks(bufs));
                    }
                    let [ba, bb] = bufs;
                    let span = [first, end, f.width];
                    let xa = direct[0].then(|| read_window(&f.a, span, ba));
                    let xa = xa.flatten();
                    // One tensor on both sides (an exact copy measured against its own
                    // bytes): read once, and the kernel of a run against itself still
                    // applies (`stored_moments` compares the slices' addresses).
                    let xb = if same {
                        xa
                    } else {
                        direct[1].then(|| read_window(&f.b, span, bb)).flatten()
                    };
                    run(Bytes::Window([xa, xb]))
                })
            })
            .collect::<Result<Vec<Vec<ChunkOut>>>>()?;
        if sampled {
            // A subsample touches a few chunks (plus the kernel's fault-around) spread over
            // the whole tensor: one release of the tensor afterwards, rather than one
            // `madvise` (and TLB shoot-down) per chunk.
            f.release(0, numel);
        }
        per_window.into_iter().flatten().collect()
    } else {
        // Windows of chunks, as on the fused path: each read front to back by one thread,
        // then handed back on both sides ([`WeightSource::release`]), so a pair the fused
        // path does not cover (mixed dtypes, quantized blocks, an exact dequantisation) keeps
        // resident memory independent of model size too.
        let windows = take.div_ceil(RELEASE_CHUNKS);
        let q8 = Q8_0Direct::of(a, b, numel);
        let gather = Gather::pair(a, b, numel);
        #[cfg(target_endian = "little")]
        let (in_a, in_b) = (f32_in_place(a, numel), f32_in_place(b, numel));
        let per_window = (0..windows)
            .into_par_iter()
            .map(|w| {
                let ks = w * RELEASE_CHUNKS..take.min((w + 1) * RELEASE_CHUNKS);
                let mut out = Vec::with_capacity(ks.len());
                let (mut buf_a, mut buf_b) = (vec![0f32; CHUNK], vec![0f32; CHUNK]);
                let (mut raw_a, mut raw_b) = (Vec::new(), Vec::new());
                for k in ks {
                    let c = chunk_of(k);
                    let (start, len) = span(c);
                    // Q8_0 against Q8_0 or stored floats: both decoded inside the kernel,
                    // same bits, unless the chunk's f32 values are wanted (a kept sample, a
                    // magnitude scan).
                    let direct = q8
                        .as_ref()
                        .filter(|_| !keep(c))
                        .and_then(|q| q.moments(start, len, want_mags, [&mut raw_a, &mut raw_b]));
                    if let Some((moments, mags)) = direct {
                        out.push(ChunkOut {
                            moments,
                            kept: None,
                            hist: None,
                            mags,
                        });
                        continue;
                    }
                    // Rows stored in another order (GGUF's RoPE rows) against the same
                    // float dtype: the chunk's stored rows gathered, then the fused kernel —
                    // the values `read_f32` gives, in the same lanes, so the same bits.
                    let rows = gather.as_ref().and_then(|(ga, gb, stored)| {
                        let x = ga.get(start, len, &mut raw_a)?;
                        let y = gb.get(start, len, &mut raw_b)?;
                        let kept = if keep(c) {
                            Some((ga.f32_le(x)?, gb.f32_le(y)?))
                        } else {
                            None
                        };
                        let (moments, mags) = stored_moments(*stored, x, y, want_mags);
                        Some(ChunkOut {
                            moments,
                            kept,
                            hist: None,
                            mags,
                        })
                    });
                    if let Some(chunk) = rows {
                        out.push(chunk);
                        continue;
                    }
                    let (buf_a, buf_b) = (&mut buf_a[..len], &mut buf_b[..len]);
                    // A side stored as F32 goes to the kernel from the map as it is (an
                    // exact copy against another dtype, say): same values, same bits, no
                    // copy into the buffer.
                    #[cfg(target_endian = "little")]
                    if in_a.is_some() || in_b.is_some() {
                        let range = start * 4..(start + len) * 4;
                        let xa = match in_a {
                            Some(v) => v.get(range.clone()),
                            None => a.read_f32(start, buf_a).map(|()| f32_bytes(buf_a)).ok(),
                        };
                        let xb = match in_b {
                            Some(v) => v.get(range),
                            None => b.read_f32(start, buf_b).map(|()| f32_bytes(buf_b)).ok(),
                        };
                        if let (Some(xa), Some(xb)) = (xa, xb) {
                            let kept = keep(c).then(|| (xa.to_vec(), xb.to_vec()));
                            let (moments, mags) = stored_moments(Stored::F32, xa, xb, want_mags);
                            out.push(ChunkOut {
                                moments,
                                kept,
                                hist: None,
                                mags,
                            });
                            continue;
                        }
                    }
                    a.read_f32(start, buf_a)?;
                    b.read_f32(start, buf_b)?;
                    let kept = keep(c).then(|| (f32_le_bytes(buf_a), f32_le_bytes(buf_b)));
                    let (moments, max) = super::kernels::slices_max(buf_a, buf_b, want_mags);
                    let mags = want_mags.then(|| {
                        [
                            Magnitudes::of_f32_max(buf_a, max.map(|[a, _]| a)),
                            Magnitudes::of_f32_max(buf_b, max.map(|[_, b]| b)),
                        ]
                    });
                    out.push(ChunkOut {
                        moments,
                        kept,
                        hist: None,
                        mags,
                    });
                }
                if !sampled {
                    let first = w * RELEASE_CHUNKS * CHUNK;
                    let end = numel.min((w + 1) * RELEASE_CHUNKS * CHUNK);
                    a.source.release(a.index, first, end);
                    b.source.release(b.index, first, end);
                }
                Ok(out)
            })
            .collect::<Result<Vec<Vec<ChunkOut>>>>()?;
        if sampled {
            a.source.release(a.index, 0, numel);
            b.source.release(b.index, 0, numel);
        }
        per_window.into_iter().flatten().collect()
    };
    // Chunk order, whatever the thread count.
    let mut moments = Moments::default();
    let stored = fused.as_ref().map_or(Stored::F32, |f| f.stored);
    let mut samples = taps
        .samples
        .map(|budget| Samples::empty(numel, budget, stored));
    let mut hist = ulp_budget.map(|_| [0u64; ulp::BUCKETS]);
    let mut mags = want_mags.then(|| [Magnitudes::default(); 2]);
    for part in partials {
        if let (Some([ta, tb]), Some([pa, pb])) = (mags.as_mut(), part.mags) {
            (*ta, *tb) = (ta.merge(pa), tb.merge(pb));
        }
        moments = moments.merge(part.moments);
        if let (Some(s), Some((xa, xb))) = (samples.as_mut(), part.kept) {
            s.push(xa, xb);
        }
        if let (Some(total), Some(h)) = (hist.as_mut(), part.hist) {
            ulp::add(total, &h);
        }
    }
    Ok(PairPass {
        moments,
        samples,
        ulp: hist.and_then(|h| ulp::stats(&h)),
        magnitudes: mags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::uniform_f32;

    /// A safetensors file in a temporary directory holding `a` and `b` as BF16, F16 and F32
    /// (tensors `bf16.a`, `bf16.b`, `f16.a`, … in that order: indices 0–5), opened; with
    /// `odd`, after a 3-element F32 tensor (named to sort last), so that they start off a
    /// 4 KiB block.
    #[allow(clippy::unwrap_used)]
    fn dtype_pairs(
        a: &[f32],
        b: &[f32],
        odd: bool,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        Box<dyn crate::WeightSource>,
    ) {
        use crate::{Format, Limits};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let mut file = crate::testing::SafetensorsBuilder::new();
        if odd {
            file = file.tensor_f32("odd", &[3], &[1.0, 2.0, 3.0]);
        }
        let n = a.len().min(b.len());
        file.tensor_bf16("bf16.a", &[n], a)
            .tensor_bf16("bf16.b", &[n], b)
            .tensor_f16("f16.a", &[n], a)
            .tensor_f16("f16.b", &[n], b)
            .tensor_f32("f32.a", &[n], a)
            .tensor_f32("f32.b", &[n], b)
            .write(&path)
            .unwrap();
        let src = crate::safetensors::FORMAT
            .open(&path, &Limits::default())
            .unwrap();
        (dir, path, src)
    }

    /// The fused path (decoding from the map, with page releases) gives the same bits as
    /// converting to f32 first, for BF16 and F32, full and sampled; a sample is a subset.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn fused_path_matches_buffered_bitwise() {
        let n = 40 * CHUNK + 123;
        let (va, vb) = (uniform_f32(n, 7, 0.49, 0.51), uniform_f32(n, 8, 0.49, 0.51));
        let (_dir, path, src) = dtype_pairs(&va, &vb, false);
        let src = src.as_ref();
        let side = |i| Side::new(src, i);
        for (x, y) in [(0, 1), (2, 3), (4, 5)] {
            let (x, y) = (side(x), side(y));
            assert!(x.raw().is_some());
            let fused = pair_moments(x, y, n).unwrap();
            let ta = read_tensor(x, n).unwrap();
            let tb = read_tensor(y, n).unwrap();
            assert_eq!(fused, Moments::of_tensors(&ta, &tb));
            let sampled = pair_moments_sampled(x, y, n, 8 * CHUNK).unwrap();
            assert_eq!(sampled.n, 8 * CHUNK as u64);
            let all = pair_moments_sampled(x, y, n, usize::MAX).unwrap();
            assert_eq!(all, fused);
        }
        // Taps: one pass keeps the sample and the ULP histogram that separate passes would
        // read, bit for bit, and pairs samples across tensors like `pair_moments_sampled`.
        let mut hashers = crate::FileHashers::new();
        let len = std::fs::metadata(&path).unwrap().len();
        hashers.add(&path, len);
        let taps = Taps {
            samples: Some(8 * CHUNK),
            ulp: Some(4 * CHUNK),
            observer: Some(&hashers),
            magnitudes: true,
            ..Default::default()
        };
        for (x, y, bf16) in [(0, 1, true), (2, 3, false), (4, 5, false)] {
            let (x, y) = (side(x), side(y));
            let pass = pair_pass(x, y, n, &taps).unwrap();
            assert_eq!(pass.moments, pair_moments(x, y, n).unwrap());
            let ulp = crate::bf16_ulp_sampled(x, y, 4 * CHUNK);
            assert_eq!(pass.ulp, ulp);
            assert_eq!(pass.ulp.is_some(), bf16);
            let flipped = pair_pass(y, x, n, &taps).unwrap();
            let (sx, sy) = (pass.samples.unwrap(), flipped.samples.unwrap());
            // a side of (x, y) against b side of (y, x): x against x.
            let cross = Samples::cross(&sx, &sy).unwrap();
            assert_eq!(cross, pair_moments_sampled(x, x, n, 8 * CHUNK).unwrap());
            let cross = Samples::cross(&sy, &sx).unwrap();
            assert_eq!(cross, pair_moments_sampled(y, y, n, 8 * CHUNK).unwrap());
            let (ta, tb) = (read_tensor(x, n).unwrap(), read_tensor(y, n).unwrap());
            let mags = [Magnitudes::of_f32(&ta), Magnitudes::of_f32(&tb)];
            assert_eq!(pass.magnitudes, Some(mags));
            assert!(mags[0].largest > 0.49 && !mags[0].nan && !mags[0].inf);
            // The buffered path (mixed dtypes) keeps the same magnitudes.
            let mixed = pair_pass(x, side(2), n, &taps).unwrap();
            assert_eq!(mixed.magnitudes.map(|m| m[0]), Some(mags[0]));
            // Its F32 side goes to the kernel from the map (no buffer): the same bits and
            // magnitudes as decoding both sides first, either way round.
            let tc = read_tensor(side(2), n).unwrap();
            assert_eq!(mixed.moments, Moments::of_tensors(&ta, &tc));
            assert_eq!(mixed.magnitudes, Some([mags[0], Magnitudes::of_f32(&tc)]));
            let back = pair_pass(side(2), x, n, &taps).unwrap();
            assert_eq!(back.moments, Moments::of_tensors(&tc, &ta));
            let decoded = Samples::of_tensors(&tc, &ta, 8 * CHUNK).unwrap();
            let stored = back.samples.unwrap();
            assert_eq!(Samples::cross(&decoded, &sy), Samples::cross(&stored, &sy));
            // Decoded samples pair with stored ones bit-identically (the mixed path).
            let decoded = Samples::of_tensors(&ta, &tb, 8 * CHUNK).unwrap();
            assert_eq!(Samples::cross(&decoded, &sy), Samples::cross(&sx, &sy));
            assert_eq!(Samples::cross(&sy, &decoded), Samples::cross(&sy, &sx));
        }
        // The passes hashed most of the file on the way; the rest is hashed at the end.
        let hasher = hashers.get(&path).unwrap();
        let (done, units) = hasher.progress();
        assert!(
            done * 10 > units * 8,
            "{done} of {units} units hashed by the passes"
        );
        let map = crate::MappedFile::open(&path).unwrap();
        let want = blake3::hash(&std::fs::read(&path).unwrap())
            .to_hex()
            .to_string();
        assert_eq!(hasher.finish(&map).unwrap(), want);
    }

    /// A full fused pass shows its observer every stored byte of both tensors once, in whole
    /// windows of [`RELEASE_CHUNKS`] chunks (the last one short); a subsample shows it nothing.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn observer_sees_every_window_of_a_full_pass_once() {
        use crate::{Format, Limits};
        use std::sync::Mutex;

        /// The windows shown: file offset and length (each checked to be the file's bytes
        /// there, whether shown from the map or from a direct read).
        #[derive(Default)]
        struct Record(Mutex<Vec<[usize; 2]>>);
        impl WindowObserver for Record {
            fn window(&self, file: &MappedFile, at: usize, bytes: &[u8]) {
                assert_eq!(&file.bytes()[at..at + bytes.len()], bytes);
                self.0.lock().unwrap().push([at, bytes.len()]);
            }
        }

        let n = RELEASE_CHUNKS * CHUNK + 5;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        crate::testing::SafetensorsBuilder::new()
            .tensor_bf16("a", &[n], &vec![0.5; n])
            .tensor_bf16("b", &[n], &vec![0.25; n])
            .write(&path)
            .unwrap();
        let src = crate::safetensors::FORMAT
            .open(&path, &Limits::default())
            .unwrap();
        let src = src.as_ref();
        let side = |i| Side::new(src, i);
        for direct in [DirectReads::Never, DirectReads::Always] {
            let record = Record::default();
            let taps = Taps {
                observer: Some(&record),
                direct,
                ..Taps::default()
            };
            pair_pass(side(0), side(1), n, &taps).unwrap();
            let mut got = record.0.lock().unwrap().clone();
            got.sort_unstable();
            let window = RELEASE_CHUNKS * CHUNK * 2;
            let mut want = Vec::new();
            for i in [0, 1] {
                let raw = src.raw(i).unwrap();
                let at = raw.file.offset_of(raw.bytes).unwrap();
                want.extend([[at, window], [at + window, 5 * 2]]);
            }
            want.sort_unstable();
            assert_eq!(got, want, "{direct:?}");
        }

        let record = Record::default();
        let taps = Taps {
            observer: Some(&record),
            ..Taps::default()
        };
        stream(side(0), side(1), n, CHUNK, &taps).unwrap();
        assert!(record.0.lock().unwrap().is_empty());
    }

    /// A pass that reads its windows (a subsample: its chunks) with `O_DIRECT` gives what
    /// reading the map gives, bit for bit, with every tap: each stored dtype, tensors of several windows with a ragged
    /// tail, off a block boundary in the file, and a tensor against itself (read once, the
    /// kernel of a run against itself). Where the file system takes `O_DIRECT`, the reads
    /// really were direct.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn direct_reads_give_the_map_s_pass_bit_for_bit() {
        let n = 2 * RELEASE_CHUNKS * CHUNK + 3 * CHUNK + 7;
        let a = crate::testing::uniform_f32(n, 5, -1.0, 1.0);
        let b: Vec<f32> = a
            .iter()
            .zip(crate::testing::uniform_f32(n, 6, -0.01, 0.01))
            .map(|(x, e)| x + e)
            .collect();
        let (_dir, _, src) = dtype_pairs(&a, &b, true);
        let src = src.as_ref();
        let file = src.raw(0).unwrap().file;
        let before = crate::mmap::direct_reads();
        for dtype in ["bf16", "f16", "f32"] {
            let ia = src.find(&format!("{dtype}.a")).unwrap();
            let ib = src.find(&format!("{dtype}.b")).unwrap();
            for (x, y) in [(ia, ib), (ia, ia)] {
                let pass = |direct| {
                    let taps = Taps {
                        samples: Some(4 * CHUNK),
                        ulp: Some(4 * CHUNK),
                        magnitudes: true,
                        direct,
                        ..Taps::default()
                    };
                    pair_pass(Side::new(src, x), Side::new(src, y), n, &taps).unwrap()
                };
                let (mapped, direct) = (pass(DirectReads::Never), pass(DirectReads::Always));
                // Debug shows every f64 to the bit (shortest round-trip form, `-0.0`).
                let same = |p: &dyn std::fmt::Debug, q: &dyn std::fmt::Debug| {
                    assert_eq!(format!("{p:?}"), format!("{q:?}"), "{dtype} {x} {y}");
                };
                same(&mapped, &direct);
                // A subsample, its chunks read one by one.
                let sub = |direct| {
                    let (a, b) = (Side::new(src, x), Side::new(src, y));
                    pair_moments_sampled_with(a, b, n, 5 * CHUNK, direct).unwrap()
                };
                same(&sub(DirectReads::Never), &sub(DirectReads::Always));
            }
        }
        if file.can_read_direct() {
            assert!(crate::mmap::direct_reads() > before);
        }
    }
}
