//! The vocabulary of generated tensors: tables a model computes from a formula rather than
//! learns (signal-processing bases, position tables, masks), named as the report states them.
//! Only the names live here, in the leaf report model; recognising a table by its content is
//! the judge's ([`crate::judge::generated`]).

use std::fmt;

/// A window applied to the rows of an STFT basis. "Periodic" windows have period N (what
/// `torch.hann_window` and `scipy.signal.get_window(..., fftbins=True)` give by default);
/// "symmetric" ones period N − 1 (`numpy.hanning`, `periodic=False`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Window {
    /// All ones.
    Rectangular,
    /// Hann, periodic.
    HannPeriodic,
    /// Hann, symmetric.
    HannSymmetric,
    /// Hamming (0.54 − 0.46 cos), periodic.
    HammingPeriodic,
    /// Hamming, symmetric.
    HammingSymmetric,
    /// Square root of the periodic Hann window.
    SqrtHannPeriodic,
    /// Square root of the symmetric Hann window.
    SqrtHannSymmetric,
    /// Kaldi's "povey" window: the symmetric Hann window to the power 0.85.
    Povey,
}

impl Window {
    /// Every window, in the order the recogniser tries them.
    pub const ALL: [Window; 8] = [
        Window::Rectangular,
        Window::HannPeriodic,
        Window::HannSymmetric,
        Window::HammingPeriodic,
        Window::HammingSymmetric,
        Window::SqrtHannPeriodic,
        Window::SqrtHannSymmetric,
        Window::Povey,
    ];

    /// The name the report uses.
    pub const fn name(self) -> &'static str {
        match self {
            Window::Rectangular => "rectangular",
            Window::HannPeriodic => "hann",
            Window::HannSymmetric => "symmetric hann",
            Window::HammingPeriodic => "hamming",
            Window::HammingSymmetric => "symmetric hamming",
            Window::SqrtHannPeriodic => "sqrt-hann",
            Window::SqrtHannSymmetric => "symmetric sqrt-hann",
            Window::Povey => "povey",
        }
    }
}

/// Which rows of the DFT an STFT basis holds, and in what order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StftRows {
    /// The real (cosine) rows of every frequency, then the imaginary (sine) rows:
    /// `[2·(n_fft/2+1), …]` (torch-stft, silero-vad, asteroid's conv STFT).
    Stacked,
    /// Real and imaginary row of each frequency in turn.
    Interleaved,
    /// Stacked, without the imaginary rows that are identically zero (frequency 0 and, for an
    /// even n_fft, n_fft/2): `[n_fft, …]`.
    StackedNonzero,
    /// The real (cosine) rows only: `[n_fft/2+1, …]`, one tensor of a complex pair.
    Real,
    /// The imaginary (sine) rows only, one tensor of a complex pair.
    Imaginary,
}

impl StftRows {
    /// Every layout, in the order the recogniser tries them.
    pub const ALL: [StftRows; 5] = [
        StftRows::Stacked,
        StftRows::Interleaved,
        StftRows::StackedNonzero,
        StftRows::Real,
        StftRows::Imaginary,
    ];
}

/// The mel scale of a filterbank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MelScale {
    /// Slaney's (librosa's default, Whisper): linear below 1 kHz, logarithmic above.
    Slaney,
    /// HTK's: 2595·log10(1 + f/700) (torchaudio's default).
    Htk,
}

/// How the positions and frequencies of a sinusoidal table are laid out along its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SinusoidLayout {
    /// sin and cos of each frequency in turn (Vaswani et al.; BERT-style tutorials).
    Interleaved,
    /// All sines, then all cosines (tensor2tensor, fairseq, Whisper, Marian).
    Concatenated,
}

/// How a rotary (RoPE) cos/sin cache repeats its frequencies along its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RopeLayout {
    /// The frequencies twice, one copy after the other (Hugging Face `rotate_half`).
    Halves,
    /// Each frequency twice in a row (GPT-J, `repeat_interleave`).
    Interleaved,
    /// Each frequency once.
    Single,
}

/// Which trigonometric function a rotary cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trig {
    /// Cosine.
    Cos,
    /// Sine.
    Sin,
}

/// How a causal mask marks the positions a query may not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MaskFill {
    /// 1 where a query may attend (on and below the diagonal), 0 elsewhere.
    OnesBelow,
    /// 1 where a query may not attend (above the diagonal), 0 elsewhere.
    OnesAbove,
    /// 0 where a query may attend, −∞ above the diagonal (additive).
    NegInfAbove,
    /// 0 where a query may attend, one large negative value above the diagonal (additive).
    LargeNegativeAbove,
}

/// A scale factor applied to a whole table, stored as f32 bits so that the vocabulary keeps
/// `Eq` and `Ord` (the report sorts and compares exclusions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scale(u32);

impl Scale {
    /// The scale `s`.
    pub fn new(s: f32) -> Scale {
        Scale(s.to_bits())
    }

    /// Its value.
    pub fn value(self) -> f32 {
        f32::from_bits(self.0)
    }
}

/// A generator of a table that models compute rather than learn. Each variant names the
/// parameters the recogniser found, so the report can say exactly what matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Generator {
    /// A (windowed) DFT basis as used by convolutional STFTs.
    Stft {
        /// The window multiplying every row.
        window: Window,
        /// DFT size.
        n_fft: u32,
        /// Window (kernel) length, at most `n_fft`.
        win_length: u32,
        /// Which rows, in what order.
        rows: StftRows,
        /// Sign of the sine rows (`+1`: sin, `-1`: −sin as `numpy.fft` gives).
        sine_sign: i8,
        /// Factor applied to the whole basis (1 for the common implementations).
        scale: Scale,
    },
    /// A triangular mel filterbank over the bins of a real FFT.
    Mel {
        /// The mel scale.
        scale: MelScale,
        /// Whether each filter is normalised to unit area (Slaney normalisation).
        area_norm: bool,
        /// Filters.
        n_mels: u32,
        /// DFT size (n_fft/2+1 bins).
        n_fft: u32,
        /// Sample rate, Hz.
        sample_rate: u32,
        /// Upper edge, Hz.
        f_max: u32,
        /// Stored `[n_freq, n_mels]` (torchaudio) rather than `[n_mels, n_freq]` (librosa).
        transposed: bool,
    },
    /// A sinusoidal position table (Vaswani et al.): position × frequency.
    Sinusoidal {
        /// Layout along the width.
        layout: SinusoidLayout,
        /// Frequency base (10000 in the paper).
        base: u64,
        /// Whether the frequency exponent is i/(d/2 − 1) (tensor2tensor, Whisper) rather than
        /// i/(d/2).
        minus_one: bool,
    },
    /// Rotary inverse frequencies base^(−2i/d).
    RopeInvFreq {
        /// Frequency base.
        base: u64,
    },
    /// A rotary cos or sin cache: position × frequency.
    RopeCache {
        /// Frequency base.
        base: u64,
        /// cos or sin.
        trig: Trig,
        /// How frequencies repeat along the width.
        layout: RopeLayout,
    },
    /// The identity matrix.
    Identity,
    /// A causal (lower-triangular) attention mask.
    CausalMask {
        /// How masked positions are marked.
        fill: MaskFill,
    },
    /// 0, 1, 2, … (position ids).
    Arange,
}

impl fmt::Display for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Generator::Stft {
                window,
                n_fft,
                win_length,
                rows,
                sine_sign,
                scale,
            } => {
                let rows = match rows {
                    StftRows::Stacked => "real rows then imaginary rows",
                    StftRows::Interleaved => "real and imaginary rows interleaved",
                    StftRows::StackedNonzero => "real rows then the non-zero imaginary rows",
                    StftRows::Real => "real rows only",
                    StftRows::Imaginary => "imaginary rows only",
                };
                write!(f, "STFT basis ({} window, n_fft {n_fft}", window.name())?;
                if win_length != n_fft {
                    write!(f, ", window length {win_length}")?;
                }
                write!(f, "; {rows}")?;
                if sine_sign < 0 {
                    f.write_str(", −sin")?;
                }
                let s = scale.value();
                if s != 1.0 {
                    write!(f, ", scaled ×{s}")?;
                }
                f.write_str(")")
            }
            Generator::Mel {
                scale,
                area_norm,
                n_mels,
                n_fft,
                sample_rate,
                f_max,
                transposed,
            } => {
                let scale = match scale {
                    MelScale::Slaney => "slaney",
                    MelScale::Htk => "HTK",
                };
                write!(
                    f,
                    "mel filterbank ({scale} scale, {n_mels} mels, n_fft {n_fft}, {sample_rate} Hz, \
                     0–{f_max} Hz{}{})",
                    if area_norm { ", area-normalised" } else { "" },
                    if transposed { ", [freq, mel]" } else { "" }
                )
            }
            Generator::Sinusoidal {
                layout,
                base,
                minus_one,
            } => write!(
                f,
                "sinusoidal position table ({}, base {base}{})",
                match layout {
                    SinusoidLayout::Interleaved => "sin/cos interleaved",
                    SinusoidLayout::Concatenated => "sin half then cos half",
                },
                if minus_one {
                    ", exponent i/(d/2−1)"
                } else {
                    ""
                }
            ),
            Generator::RopeInvFreq { base } => {
                write!(f, "rotary inverse frequencies (base {base})")
            }
            Generator::RopeCache { base, trig, layout } => write!(
                f,
                "rotary {} cache (base {base}, {})",
                match trig {
                    Trig::Cos => "cos",
                    Trig::Sin => "sin",
                },
                match layout {
                    RopeLayout::Halves => "frequencies repeated in halves",
                    RopeLayout::Interleaved => "frequencies repeated pairwise",
                    RopeLayout::Single => "each frequency once",
                }
            ),
            Generator::Identity => f.write_str("identity matrix"),
            Generator::CausalMask { fill } => write!(
                f,
                "causal mask ({})",
                match fill {
                    MaskFill::OnesBelow => "1 on and below the diagonal",
                    MaskFill::OnesAbove => "1 above the diagonal",
                    MaskFill::NegInfAbove => "−inf above the diagonal",
                    MaskFill::LargeNegativeAbove => "large negative above the diagonal",
                }
            ),
            Generator::Arange => f.write_str("arange 0, 1, 2, …"),
        }
    }
}
