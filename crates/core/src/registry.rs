//! The registry of formats and metrics.
//!
//! The runner builds one from a single literal list of built-ins (`weightkin_runner::registry`);
//! the core crate never registers anything by itself, so every plugin in use is visible in
//! one place. Metrics from shared-library plugins (`weightkin_plugin_host`) are added with
//! [`Registry::add_metric_from`], which records their [`Origin`] so that `weightkin plugins`
//! can say where each came from and a name clash can name the plugin that owns the name.
//! Formats are always built in: the plugin ABI carries metrics only.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{Error, Format, Limits, MetricSpec, Result, WeightSource};

/// How many leading bytes of a file [`Format::sniff`] sees.
pub const SNIFF_BYTES: usize = 64;

/// Where a registered format or metric comes from: shown by `weightkin plugins`, and named
/// when a plugin tries to take a name that is already registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into weightkin.
    BuiltIn,
    /// Loaded from a shared library (`weightkin --plugin PATH`).
    Library {
        /// The library file, as given.
        path: PathBuf,
        /// The plugin's name, from its descriptor.
        plugin: String,
        /// The plugin's version, from its descriptor.
        version: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str("built-in"),
            Origin::Library {
                path,
                plugin,
                version,
            } => write!(f, "plugin {plugin} {version} ({})", path.display()),
        }
    }
}

/// Registered formats and metrics, in registration order, each with its [`Origin`].
#[derive(Default)]
pub struct Registry {
    formats: Vec<&'static dyn Format>,
    metrics: Vec<&'static MetricSpec>,
    /// `metric_origins[i]` is where `metrics[i]` came from.
    metric_origins: Vec<Origin>,
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

    /// Adds a built-in metric; errors if its name is taken.
    pub fn add_metric(&mut self, metric: &'static MetricSpec) -> Result<()> {
        if self.metric(metric.name).is_some() {
            return Err(Error::DuplicatePlugin {
                kind: "metric",
                name: metric.name.to_owned(),
            });
        }
        self.metrics.push(metric);
        self.metric_origins.push(Origin::BuiltIn);
        Ok(())
    }

    /// Adds a metric from `origin`; if its name is taken, the error names the owner
    /// ([`Error::NameTaken`]).
    pub fn add_metric_from(&mut self, metric: &'static MetricSpec, origin: Origin) -> Result<()> {
        self.check_metric_name(metric.name)?;
        self.metrics.push(metric);
        self.metric_origins.push(origin);
        Ok(())
    }

    /// Errors with [`Error::NameTaken`] if a metric called `name` is registered.
    pub fn check_metric_name(&self, name: &str) -> Result<()> {
        match self.metric_origin(name) {
            None => Ok(()),
            Some(owner) => Err(Error::NameTaken {
                kind: "metric",
                name: name.to_owned(),
                owner: Box::new(owner.clone()),
            }),
        }
    }

    /// Where the metric called `name` came from.
    pub fn metric_origin(&self, name: &str) -> Option<&Origin> {
        let i = self.metrics.iter().position(|m| m.name == name)?;
        self.metric_origins.get(i)
    }

    /// Registered metrics with their origins.
    pub fn metrics_with_origin(&self) -> impl Iterator<Item = (&'static MetricSpec, &Origin)> {
        self.metrics.iter().copied().zip(&self.metric_origins)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::{Metric, Needs, Params};

    fn spec(name: &'static str) -> &'static MetricSpec {
        fn build(_: &Params) -> Result<Box<dyn Metric>> {
            Err(Error::NoSuchTensor { index: 0, count: 0 })
        }
        Box::leak(Box::new(MetricSpec {
            name,
            doc: "test",
            range: (0.0, 1.0),
            symmetric: true,
            identity: None,
            params: &[],
            needs: Needs::Tensors,
            build: &build,
        }))
    }

    fn library(path: &str) -> Origin {
        Origin::Library {
            path: path.into(),
            plugin: "p".into(),
            version: "1.0".into(),
        }
    }

    #[test]
    fn origins_are_recorded_and_name_the_owner_of_a_taken_name() {
        let mut r = Registry::new();
        r.add_metric(spec("a")).unwrap();
        r.add_metric_from(spec("b"), library("/x/libp.so")).unwrap();
        assert_eq!(r.metric_origin("a"), Some(&Origin::BuiltIn));
        assert_eq!(r.metric_origin("b"), Some(&library("/x/libp.so")));
        assert_eq!(r.metric_origin("c"), None);
        let listed: Vec<_> = r
            .metrics_with_origin()
            .map(|(m, o)| (m.name, o.to_string()))
            .collect();
        assert_eq!(
            listed,
            [
                ("a", "built-in".to_owned()),
                ("b", "plugin p 1.0 (/x/libp.so)".to_owned())
            ]
        );

        let err = r
            .add_metric_from(spec("b"), library("/y/libq.so"))
            .unwrap_err();
        assert!(
            matches!(&err, Error::NameTaken { kind: "metric", name, owner }
                if name == "b" && **owner == library("/x/libp.so")),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "a metric named `b` is already registered by plugin p 1.0 (/x/libp.so)"
        );
        assert!(matches!(
            r.add_metric_from(spec("a"), library("/y/libq.so")),
            Err(Error::NameTaken { owner, .. }) if *owner == Origin::BuiltIn
        ));
        // Built-in against built-in stays the old error.
        assert!(matches!(
            r.add_metric(spec("a")),
            Err(Error::DuplicatePlugin { .. })
        ));
        assert_eq!(r.metrics().len(), 2);
    }
}
