//! The registry of formats and metrics.
//!
//! The runner builds one from a single literal list of built-ins (`weightkin_runner::registry`);
//! the core crate never registers anything by itself, so every plugin in use is visible in
//! one place.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::{Error, Format, Limits, MetricSpec, Result, WeightSource};

/// How many leading bytes of a file [`Format::sniff`] sees.
pub const SNIFF_BYTES: usize = 64;

/// Registered formats and metrics, in registration order.
#[derive(Default)]
pub struct Registry {
    formats: Vec<&'static dyn Format>,
    metrics: Vec<&'static MetricSpec>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a format; errors if its name is taken.
    pub fn add_format(&mut self, format: &'static dyn Format) -> Result<()> {
        if self.format(format.name()).is_some() {
            return Err(Error::DuplicatePlugin {
                kind: "format",
                name: format.name().to_owned(),
            });
        }
        self.formats.push(format);
        Ok(())
    }

    /// Adds a metric; errors if its name is taken.
    pub fn add_metric(&mut self, metric: &'static MetricSpec) -> Result<()> {
        if self.metric(metric.name).is_some() {
            return Err(Error::DuplicatePlugin {
                kind: "metric",
                name: metric.name.to_owned(),
            });
        }
        self.metrics.push(metric);
        Ok(())
    }

    /// Registered formats.
    pub fn formats(&self) -> &[&'static dyn Format] {
        &self.formats
    }

    /// Registered metrics.
    pub fn metrics(&self) -> &[&'static MetricSpec] {
        &self.metrics
    }

    /// The format called `name`.
    pub fn format(&self, name: &str) -> Option<&'static dyn Format> {
        self.formats.iter().copied().find(|f| f.name() == name)
    }

    /// The metric called `name`.
    pub fn metric(&self, name: &str) -> Option<&'static MetricSpec> {
        self.metrics.iter().copied().find(|m| m.name == name)
    }

    fn format_names(&self) -> String {
        let names: Vec<_> = self.formats.iter().map(|f| f.name()).collect();
        names.join(", ")
    }

    /// Finds the format for `path`: the one named, or else the first whose `sniff` accepts
    /// the path and its first [`SNIFF_BYTES`] bytes.
    pub fn detect(&self, path: &Path, format: Option<&str>) -> Result<&'static dyn Format> {
        if let Some(name) = format {
            return self.format(name).ok_or_else(|| Error::NoSuchFormat {
                name: name.to_owned(),
                known: self.format_names(),
            });
        }
        let io = |action, source| Error::Io {
            path: path.to_owned(),
            action,
            source,
        };
        let meta = std::fs::metadata(path).map_err(|e| io("read metadata", e))?;
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        if meta.is_file() {
            File::open(path)
                .map_err(|e| io("open", e))?
                .take(SNIFF_BYTES as u64)
                .read_to_end(&mut head)
                .map_err(|e| io("read", e))?;
        }
        self.formats
            .iter()
            .copied()
            .find(|f| f.sniff(path, &head))
            .ok_or_else(|| Error::UnknownFormat {
                path: path.to_owned(),
                kind: if meta.is_dir() { "directory" } else { "file" },
                known: self.format_names(),
            })
    }

    /// Detects the format of `path` (or uses the one named) and opens it.
    pub fn open(
        &self,
        path: &Path,
        format: Option<&str>,
        limits: &Limits,
    ) -> Result<Box<dyn WeightSource>> {
        self.detect(path, format)?.open(path, limits)
    }
}
