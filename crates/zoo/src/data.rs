//! Training data, generated: nothing is downloaded, nothing is read from the repository.
//!
//! Three kinds, one per architecture family:
//!
//! - **Text** ([`TextDomain`]): character-level English-like text from small grammars — short
//!   stories (the bases' data), cooking instructions and arithmetic lines (fine-tuning data).
//!   A real model's embedding carries token-frequency structure; so do these, because letters,
//!   spaces and punctuation occur at English-like rates while some characters of the
//!   vocabulary never occur (their embedding rows stay at initialisation, as unused tokens do
//!   in real vocabularies).
//! - **Glyph images** ([`ImageDomain`]): 16 × 16 renderings of a 5 × 7 bitmap font (digits,
//!   letters A–J, upside-down digits) with random position, shear, stroke intensity and noise,
//!   a procedural stand-in for MNIST-style digits.
//! - **Tabular** ([`MixtureDomain`]): a Gaussian-mixture classification task in 32 dimensions,
//!   the task (cluster centres) fixed by a task seed.
//!
//! Every sample is drawn from a [`Stream`], so a model's data is a pure function of its name.

use crate::rng::Stream;

/// The character vocabulary of the text models: index = token id. Some characters (`#`, `@`,
/// `%`, `/`, several capitals) never occur in any domain, like unused tokens of a real
/// tokenizer.
pub const VOCAB: &str =
    "\n !\"',-.:;?0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+=*#@%/";

/// Token id of a character; unknown characters map to the id of `?`.
fn token(c: char) -> u32 {
    VOCAB
        .chars()
        .position(|v| v == c)
        .or_else(|| VOCAB.chars().position(|v| v == '?'))
        .unwrap_or(0) as u32
}

/// A text domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextDomain {
    /// Short stories about animals and people (the bases' data).
    Story,
    /// Cooking instructions.
    Recipe,
    /// Arithmetic lines (`12 + 7 = 19.`).
    Arithmetic,
}

const NAMES: &[&str] = &[
    "Anna", "Tom", "Lena", "Ben", "Mia", "Sam", "Ella", "Max", "Rosa", "Jack", "Nora", "Otto",
];
const ANIMALS: &[&str] = &[
    "fox", "bird", "cat", "dog", "horse", "mouse", "owl", "bear", "frog", "goat", "duck", "wolf",
];
const ADJECTIVES: &[&str] = &[
    "old", "small", "quiet", "brave", "tired", "happy", "little", "clever", "young", "grey",
    "bright", "lazy", "curious", "gentle",
];
const PLACES: &[&str] = &[
    "river", "forest", "garden", "village", "hill", "house", "market", "lake", "field", "bridge",
    "road", "barn",
];
const VERBS: &[&str] = &[
    "saw", "found", "followed", "watched", "helped", "called", "met", "chased", "heard", "loved",
    "visited", "asked",
];
const MOTIONS: &[&str] = &[
    "walked", "ran", "went", "came", "hurried", "wandered", "jumped", "climbed",
];
const PREPOSITIONS: &[&str] = &["to", "near", "across", "behind", "along", "into", "past"];
const TIMES: &[&str] = &[
    "In the morning",
    "At night",
    "One day",
    "Later",
    "After a while",
    "Before dinner",
    "In the spring",
    "That evening",
];
const FEELINGS: &[&str] = &["cold", "hungry", "late", "dark", "warm", "quiet", "raining"];
const SAYINGS: &[&str] = &[
    "Where are you going?",
    "Come with me!",
    "I am hungry.",
    "Look at the sky!",
    "Can you help me?",
    "It is time to go home.",
    "What a fine day!",
];

const INGREDIENTS: &[&str] = &[
    "flour", "sugar", "butter", "milk", "salt", "rice", "onion", "garlic", "tomato", "cheese",
    "water", "oil", "pepper", "lemon",
];
const UNITS: &[&str] = &["cups", "spoons", "grams", "pinches", "slices", "drops"];
const ACTIONS: &[&str] = &[
    "Mix", "Stir", "Add", "Chop", "Boil", "Bake", "Fry", "Pour", "Whisk", "Heat", "Slice",
];
const TOOLS: &[&str] = &["bowl", "pan", "pot", "oven", "plate", "jar"];

impl TextDomain {
    /// The domain's name in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            TextDomain::Story => "story",
            TextDomain::Recipe => "recipe",
            TextDomain::Arithmetic => "arithmetic",
        }
    }

    fn sentence(self, s: &mut Stream, out: &mut String) {
        match self {
            TextDomain::Story => story_sentence(s, out),
            TextDomain::Recipe => recipe_sentence(s, out),
            TextDomain::Arithmetic => {
                let a = s.below(100);
                let b = s.below(100);
                match s.below(3) {
                    0 => out.push_str(&format!("{a} + {b} = {}.", a + b)),
                    1 if a >= b => out.push_str(&format!("{a} - {b} = {}.", a - b)),
                    1 => out.push_str(&format!("{b} - {a} = {}.", b - a)),
                    _ => out.push_str(&format!(
                        "{} * {} = {}.",
                        a % 13,
                        b % 13,
                        (a % 13) * (b % 13)
                    )),
                }
            }
        }
    }

    /// `chars` characters of the domain's text, as token ids.
    pub fn tokens(self, s: &mut Stream, chars: usize) -> Vec<u32> {
        let mut text = String::with_capacity(chars + 200);
        while text.len() < chars {
            self.sentence(s, &mut text);
            text.push(if s.below(4) == 0 { '\n' } else { ' ' });
        }
        text.chars().take(chars).map(token).collect()
    }
}

fn subject(s: &mut Stream) -> String {
    if s.below(3) == 0 {
        (*s.pick(NAMES)).to_owned()
    } else {
        format!("the {} {}", s.pick(ADJECTIVES), s.pick(ANIMALS))
    }
}

fn capitalise(t: &str) -> String {
    let mut c = t.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn story_sentence(s: &mut Stream, out: &mut String) {
    let who = subject(s);
    let sentence = match s.below(6) {
        0 => format!(
            "{}, {} {} {} the {}.",
            s.pick(TIMES),
            who,
            s.pick(MOTIONS),
            s.pick(PREPOSITIONS),
            s.pick(PLACES)
        ),
        1 => format!("{} {} {}.", capitalise(&who), s.pick(VERBS), subject(s)),
        2 => format!(
            "It was {}, so {} {} home.",
            s.pick(FEELINGS),
            who,
            s.pick(MOTIONS)
        ),
        3 => format!("\"{}\" said {}.", s.pick(SAYINGS), who),
        4 => format!(
            "{} {} {} {} the {} and {} {}.",
            capitalise(&who),
            s.pick(MOTIONS),
            s.pick(PREPOSITIONS),
            s.pick(PREPOSITIONS),
            s.pick(PLACES),
            s.pick(VERBS),
            subject(s)
        ),
        _ => format!(
            "{} had {} {}s and {} {}s.",
            capitalise(&who),
            2 + s.below(8),
            s.pick(ANIMALS),
            1 + s.below(5),
            s.pick(PLACES)
        ),
    };
    out.push_str(&sentence);
}

fn recipe_sentence(s: &mut Stream, out: &mut String) {
    let sentence = match s.below(4) {
        0 => format!(
            "{} {} {} of {} in a {}.",
            s.pick(ACTIONS),
            1 + s.below(9),
            s.pick(UNITS),
            s.pick(INGREDIENTS),
            s.pick(TOOLS)
        ),
        1 => format!(
            "{} the {} with the {} for {} minutes.",
            s.pick(ACTIONS),
            s.pick(INGREDIENTS),
            s.pick(INGREDIENTS),
            5 * (1 + s.below(12))
        ),
        2 => format!(
            "Heat the {} to {} degrees.",
            s.pick(TOOLS),
            120 + 10 * s.below(10)
        ),
        _ => format!(
            "Serve with {} and {}; keep the rest in a {}.",
            s.pick(INGREDIENTS),
            s.pick(INGREDIENTS),
            s.pick(TOOLS)
        ),
    };
    out.push_str(&sentence);
}

/// An image domain: 16 × 16 glyphs, 10 classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageDomain {
    /// Digits 0–9 (the bases' data).
    Digits,
    /// Letters A–J.
    Letters,
    /// Digits rotated by 180°.
    Flipped,
}

/// Image side in pixels.
pub const IMAGE: usize = 16;

/// 5 × 7 bitmaps: digits 0–9, then letters A–J. Each glyph is 7 rows of 5 bits.
const FONT: [[u8; 7]; 20] = [
    [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E], // 0
    [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E], // 1
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F], // 2
    [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E], // 3
    [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02], // 4
    [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E], // 5
    [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E], // 6
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08], // 7
    [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E], // 8
    [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C], // 9
    [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11], // A
    [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E], // B
    [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E], // C
    [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C], // D
    [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F], // E
    [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10], // F
    [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F], // G
    [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11], // H
    [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E], // I
    [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C], // J
];

impl ImageDomain {
    /// The domain's name in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            ImageDomain::Digits => "digits",
            ImageDomain::Letters => "letters",
            ImageDomain::Flipped => "flipped-digits",
        }
    }

    /// One labelled image (row-major, IMAGE × IMAGE pixels).
    pub fn sample(self, s: &mut Stream) -> (Vec<f32>, u32) {
        let label = s.below(10);
        let glyph = match self {
            ImageDomain::Letters => &FONT[10 + label],
            ImageDomain::Digits | ImageDomain::Flipped => &FONT[label],
        };
        let flip = self == ImageDomain::Flipped;
        // Each font pixel becomes 2 × 2 image pixels: a 10 × 14 glyph placed at a random
        // offset in the 16 × 16 frame, sheared and with per-stroke intensity.
        let (ox, oy) = (
            s.below(IMAGE - 10 + 1) as f32,
            s.below(IMAGE - 14 + 1) as f32,
        );
        let shear = s.between(-0.25, 0.25);
        let ink = s.between(0.6, 1.2);
        let mut img = vec![0f32; IMAGE * IMAGE];
        for (gy, row) in glyph.iter().enumerate() {
            for gx in 0..5 {
                let (fx, fy) = if flip { (4 - gx, 6 - gy) } else { (gx, gy) };
                if (row >> (4 - fx)) & 1 == 0 {
                    continue;
                }
                let stroke = ink * s.between(0.7, 1.0);
                for dy in 0..2 {
                    for dx in 0..2 {
                        let y = oy + (2 * fy + dy) as f32;
                        let x = ox + (2 * fx + dx) as f32 + shear * (y - 8.0);
                        let (xi, yi) = (x.round() as isize, y as isize);
                        if (0..IMAGE as isize).contains(&xi) && (0..IMAGE as isize).contains(&yi) {
                            img[yi as usize * IMAGE + xi as usize] = stroke;
                        }
                    }
                }
            }
        }
        for p in &mut img {
            *p += 0.15 * s.normal();
        }
        (img, label as u32)
    }
}

/// A tabular task: 8 classes in 32 dimensions, each class a mixture of 2 Gaussian clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixtureDomain {
    /// Which task: the cluster centres are drawn from this seed.
    pub task: u32,
}

/// Input dimension of the tabular task.
pub const FEATURES: usize = 32;
/// Classes of the tabular task.
pub const MIXTURE_CLASSES: usize = 8;
const CLUSTERS_PER_CLASS: usize = 2;

impl MixtureDomain {
    /// The domain's name in the manifest.
    pub fn name(self) -> String {
        format!("mixture-{}", self.task)
    }

    /// The task's cluster centres, class-major.
    pub fn centres(self) -> Vec<Vec<f32>> {
        let mut s = Stream::new(&["mixture-centres", &self.task.to_string()]);
        (0..MIXTURE_CLASSES * CLUSTERS_PER_CLASS)
            .map(|_| s.normals(FEATURES, 0.8))
            .collect()
    }

    /// One labelled sample, given the task's centres.
    pub fn sample(centres: &[Vec<f32>], s: &mut Stream) -> (Vec<f32>, u32) {
        let label = s.below(MIXTURE_CLASSES);
        let c = &centres[label * CLUSTERS_PER_CLASS + s.below(CLUSTERS_PER_CLASS)];
        // A smooth warp (tanh) so that the decision boundary is not linear.
        let x = c.iter().map(|m| (m + s.normal()).tanh() * 1.5).collect();
        (x, label as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_uses_the_vocabulary() {
        let mut s = Stream::new(&["test"]);
        for d in [
            TextDomain::Story,
            TextDomain::Recipe,
            TextDomain::Arithmetic,
        ] {
            let t = d.tokens(&mut s, 2000);
            assert_eq!(t.len(), 2000);
            let q = token('?');
            // Only Story has question marks; no domain produces unknown characters, which
            // would all map to `?`.
            if d != TextDomain::Story {
                assert!(!t.contains(&q), "{d:?}");
            }
        }
        assert_eq!(VOCAB.chars().count(), 80);
    }

    #[test]
    fn streams_are_reproducible() {
        let a = TextDomain::Story.tokens(&mut Stream::new(&["x"]), 500);
        let b = TextDomain::Story.tokens(&mut Stream::new(&["x"]), 500);
        let c = TextDomain::Story.tokens(&mut Stream::new(&["y"]), 500);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn glyphs_have_ink() {
        let mut s = Stream::new(&["img"]);
        for d in [
            ImageDomain::Digits,
            ImageDomain::Letters,
            ImageDomain::Flipped,
        ] {
            let (img, label) = d.sample(&mut s);
            assert!(label < 10);
            assert!(img.iter().filter(|p| **p > 0.4).count() > 20);
        }
    }
}
