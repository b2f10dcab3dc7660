//! What a parsed checkpoint pickle means: tensors (with their storage, offset, shape and
//! strides), their dotted names, and everything else as metadata.
//!
//! The walk follows PyTorch's serialisation code: `torch/_utils.py` (`_rebuild_tensor*`,
//! `_rebuild_parameter*`), `torch/_tensor.py` (`_rebuild_from_type_v2`), and
//! `torch/serialization.py` (the persistent-id tuples `("storage", storage_type, key,
//! location, numel[, view_metadata])` of `_save`, `_legacy_save` and TorchScript archives).
//!
//! Nothing here allocates from a header value before checking it: ranks against
//! [`Limits::max_rank`], element counts with checked arithmetic, tensor counts against
//! [`Limits::max_tensors`], nesting against [`MAX_DEPTH`] and the walk's length against
//! [`MAX_VISITS_PER_VALUE`].

use std::collections::BTreeMap;
use std::path::Path;

use weightkin_core::{
    checked_numel, Dtype, Error, HeaderProblem, Limits, TensorProblem, Transform,
};

use crate::pickle::{GlobalKind, Id, Pickle, Rebuild, TorchDtype, Value};
use crate::Problem;

/// Deepest nesting of containers the walk follows. Real checkpoints nest a few dozen levels
/// at most (a TorchScript module tree); CPython's default recursion limit, which bounds
/// what `pickle` itself can build, is 1000.
pub const MAX_DEPTH: usize = 256;

/// The walk visits at most this many values per value in the pickle (plus a constant).
/// Shared references are walked once per path (tied weights appear under each name, as in
/// `state_dict()`), so a pathological DAG could otherwise expand exponentially.
pub const MAX_VISITS_PER_VALUE: u64 = 16;

/// Most metadata entries kept from a checkpoint's non-tensor values; the rest are counted
/// in one final entry, so nothing disappears silently.
pub const MAX_METADATA: usize = 128;

/// Longest metadata value kept, in characters.
const MAX_METADATA_VALUE: usize = 200;

/// Top-level keys that wrap a state dict in training checkpoints, most preferred first:
/// PyTorch's own examples (`model_state_dict`), Lightning (`state_dict`), torchvision and
/// timm reference scripts (`model`, `state_dict_ema`), fairseq (`model`), DDP (`module`).
const WRAPPER_KEYS: &[&str] = &[
    "state_dict",
    "model_state_dict",
    "model",
    "module",
    "net",
    "network",
    "model_state",
    "params",
    "weights",
];

/// Name prefixes that wrappers add to every key: `torch.nn.DataParallel` and
/// `DistributedDataParallel` (`module.`), `torch.compile` (`_orig_mod.`).
const WRAPPER_PREFIXES: &[(&str, &str)] = &[
    (
        "module.",
        "torch.nn.DataParallel / DistributedDataParallel store the wrapped model as `module`",
    ),
    (
        "_orig_mod.",
        "torch.compile stores the compiled model's original module as `_orig_mod`",
    ),
];

/// A storage as a persistent id declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageDecl {
    /// Storage type as written (`FloatStorage`, `UntypedStorage`, …).
    pub type_name: String,
    /// Its element type.
    pub dtype: Dtype,
    /// Declared number of elements.
    pub numel: u64,
}

/// Where in a zip checkpoint a storage key's record lives: each pickle has its own storage
/// namespace (`data/<key>` for the main one, `constants/<key>` for TorchScript's
/// `constants.pkl`), so equal keys in the two name different records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDir {
    /// `data/<key>`: the main pickle's storages.
    Data,
    /// `constants/<key>`: TorchScript constants.
    Constants,
}

impl StorageDir {
    /// The folder's name in the archive.
    pub const fn name(self) -> &'static str {
        match self {
            StorageDir::Data => "data",
            StorageDir::Constants => "constants",
        }
    }
}

/// One tensor found in the pickle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDecl {
    /// The path of keys and attribute names leading to it.
    pub segments: Vec<String>,
    /// Key of its storage.
    pub storage: String,
    /// The archive folder its storage's record lives in.
    pub storage_dir: StorageDir,
    /// Element type.
    pub dtype: Dtype,
    /// Byte offset of element 0 within the storage (storage offset and any legacy view
    /// offset).
    pub byte_offset: u64,
    /// Byte length of the storage (or legacy storage view) as declared.
    pub storage_bytes: u64,
    /// Shape.
    pub shape: Vec<usize>,
    /// Strides in elements.
    pub stride: Vec<usize>,
    /// Number of elements.
    pub numel: usize,
}

/// Everything a walk found.
#[derive(Debug, Default)]
pub struct Walked {
    /// Tensors in walk order.
    pub tensors: Vec<TensorDecl>,
    /// Storages by key.
    pub storages: BTreeMap<String, StorageDecl>,
    /// Non-tensor values, by dotted path.
    pub metadata: BTreeMap<String, String>,
    /// Metadata entries not kept because of [`MAX_METADATA`].
    pub omitted: usize,
}

/// Walks `pickle` from its root. `path` is the file (for errors), `torchscript` says the
/// root is a TorchScript module (whose scalar attributes are module settings, not
/// checkpoint metadata), and `record_metadata` whether to keep non-tensor values.
pub fn walk(
    pickle: &Pickle,
    path: &Path,
    limits: &Limits,
    torchscript: bool,
) -> Result<Walked, Error> {
    let mut w = Walker {
        pickle,
        path,
        limits,
        torchscript,
        out: Walked::default(),
        visits: 0,
        max_visits: (pickle.values.len() as u64)
            .saturating_mul(MAX_VISITS_PER_VALUE)
            .saturating_add(1024),
        holds: vec![Holds::Unknown; pickle.values.len()],
    };
    w.walk(pickle.root, &mut Vec::new(), 0)?;
    Ok(w.out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    Unknown,
    Visiting,
    No,
    Yes,
}

struct Walker<'a> {
    pickle: &'a Pickle,
    path: &'a Path,
    limits: &'a Limits,
    torchscript: bool,
    out: Walked,
    visits: u64,
    max_visits: u64,
    holds: Vec<Holds>,
}

fn join(segments: &[String]) -> String {
    segments.join(".")
}

impl<'a> Walker<'a> {
    fn header(&self, problem: impl Into<HeaderProblem>) -> Error {
        Error::header(self.path, crate::NAME, problem.into())
    }

    fn tensor_err(&self, segments: &[String], problem: impl Into<TensorProblem>) -> Error {
        Error::tensor(self.path, &join(segments), problem.into())
    }

    fn value(&self, id: Id) -> &'a Value {
        self.pickle.get(id)
    }

    fn global_name(&self, g: u32) -> String {
        self.pickle
            .global(g)
            .map(|g| g.qualified())
            .unwrap_or_default()
    }

    fn global_kind(&self, g: u32) -> Option<GlobalKind> {
        self.pickle.global(g).map(|g| g.kind)
    }

    /// Whether the value `id` is, or contains, a tensor or storage. Cycles count as not
    /// holding one along the back edge.
    pub fn holds_tensor(&mut self, id: Id, depth: usize) -> Result<bool, Error> {
        if depth > MAX_DEPTH {
            return Err(self.header(HeaderProblem::TooDeep {
                depth,
                limit: MAX_DEPTH,
            }));
        }
        match self.holds.get(id as usize) {
            Some(Holds::Yes) => return Ok(true),
            Some(Holds::No | Holds::Visiting) | None => return Ok(false),
            Some(Holds::Unknown) => {}
        }
        if let Some(h) = self.holds.get_mut(id as usize) {
            *h = Holds::Visiting;
        }
        let children: Vec<Id> = match self.value(id) {
            Value::Call { .. } | Value::PersId(_) => {
                self.set_holds(id, Holds::Yes);
                return Ok(true);
            }
            Value::Tuple(v) | Value::List(v) | Value::Set(v) => v.clone(),
            Value::Dict { items, attrs } => items
                .iter()
                .map(|(_, v)| *v)
                .chain(attrs.iter().copied())
                .collect(),
            Value::Object { args, state, .. } => std::iter::once(*args)
                .chain(state.iter().copied())
                .collect(),
            _ => Vec::new(),
        };
        let mut found = false;
        for c in children {
            if self.holds_tensor(c, depth + 1)? {
                found = true;
                break;
            }
        }
        self.set_holds(id, if found { Holds::Yes } else { Holds::No });
        Ok(found)
    }

    fn set_holds(&mut self, id: Id, h: Holds) {
        if let Some(slot) = self.holds.get_mut(id as usize) {
            *slot = h;
        }
    }

    fn metadata(&mut self, segments: &[String], value: String) {
        if self.out.metadata.len() >= MAX_METADATA {
            self.out.omitted += 1;
            return;
        }
        let key = if segments.is_empty() {
            "value".to_owned()
        } else {
            join(segments)
        };
        let value = if value.chars().count() > MAX_METADATA_VALUE {
            let mut v: String = value.chars().take(MAX_METADATA_VALUE).collect();
            v.push('…');
            v
        } else {
            value
        };
        self.out.metadata.insert(key, value);
    }

    /// A dict key as a name segment.
    fn key(&self, id: Id) -> String {
        match self.value(id) {
            Value::Str(s) => s.to_string(),
            Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
            Value::None => "None".to_owned(),
            Value::Float(f) => f.to_string(),
            Value::Tuple(items) => {
                let parts: Vec<String> = items.iter().map(|&i| self.key(i)).collect();
                format!("({})", parts.join(", "))
            }
            Value::Global(g) => self.global_name(*g),
            other => format!("<{}>", other.kind()),
        }
    }

    /// A scalar's text for metadata.
    fn scalar(&self, v: &Value) -> Option<String> {
        Some(match v {
            Value::None => "None".to_owned(),
            Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
            Value::Int(i) => i.to_string(),
            Value::BigInt(b) => format!("<{}-byte integer>", b.len()),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => s.to_string(),
            Value::Bytes(b) => format!("<{} bytes>", b.len()),
            Value::Global(g) => self.global_name(*g),
            _ => return None,
        })
    }

    fn visit(&mut self, depth: usize) -> Result<(), Error> {
        self.visits += 1;
        if self.visits > self.max_visits {
            return Err(self.header(Problem::TooManyObjects {
                limit: self.max_visits,
            }));
        }
        if depth > MAX_DEPTH {
            return Err(self.header(HeaderProblem::TooDeep {
                depth,
                limit: MAX_DEPTH,
            }));
        }
        Ok(())
    }

    fn walk(&mut self, id: Id, segments: &mut Vec<String>, depth: usize) -> Result<(), Error> {
        self.visit(depth)?;
        match self.value(id) {
            Value::Call { .. } | Value::PersId(_) => {
                let t = self.tensor(id, segments, depth)?;
                if self.out.tensors.len() as u64 >= self.limits.max_tensors {
                    return Err(self.header(HeaderProblem::TooManyTensors {
                        count: self.out.tensors.len() as u64 + 1,
                        limit: self.limits.max_tensors,
                    }));
                }
                self.out.tensors.push(t);
            }
            Value::Dict { items, attrs } => {
                for &(k, v) in items {
                    segments.push(self.key(k));
                    self.walk(v, segments, depth + 1)?;
                    segments.pop();
                }
                if let Some(a) = *attrs {
                    self.dict_attrs(a, segments, depth)?;
                }
            }
            Value::Tuple(items) | Value::List(items) | Value::Set(items) => {
                for (i, &v) in items.iter().enumerate() {
                    segments.push(i.to_string());
                    self.walk(v, segments, depth + 1)?;
                    segments.pop();
                }
            }
            Value::Object { class, args, state } => {
                self.object(*class, *args, *state, segments, depth)?;
            }
            other => {
                if !(self.torchscript && depth > 0) {
                    let text = self.scalar(other).unwrap_or_default();
                    self.metadata(segments, text);
                }
            }
        }
        Ok(())
    }

    /// Attributes a `BUILD` set on a dict. PyTorch sets `_metadata` on every `state_dict()`
    /// (`torch.nn.Module.state_dict`: per-module version numbers); it is summarised in one
    /// metadata entry. Anything else is walked like the dict's items.
    fn dict_attrs(
        &mut self,
        attrs: Id,
        segments: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), Error> {
        let Value::Dict { items, .. } = self.value(attrs) else {
            return self.walk(attrs, segments, depth + 1);
        };
        for &(k, v) in items {
            let key = self.key(k);
            if key == "_metadata" && !self.holds_tensor(v, depth + 1)? {
                let modules = match self.value(v) {
                    Value::Dict { items, .. } => items.len(),
                    _ => 0,
                };
                segments.push(key);
                self.metadata(
                    segments,
                    format!("torch.nn.Module state-dict versions of {modules} modules"),
                );
                segments.pop();
                continue;
            }
            segments.push(key);
            self.walk(v, segments, depth + 1)?;
            segments.pop();
        }
        Ok(())
    }

    /// An object: a TorchScript module (its state is its attributes, walked by name), or a
    /// data-only object, which is walked when it holds tensors and otherwise reported as one
    /// metadata entry naming its class.
    fn object(
        &mut self,
        class: u32,
        args: Id,
        state: Option<Id>,
        segments: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), Error> {
        let torchscript = self.global_kind(class) == Some(GlobalKind::TorchScriptClass);
        let holds = self.holds_tensor(args, depth + 1)?
            || match state {
                Some(s) => self.holds_tensor(s, depth + 1)?,
                None => false,
            };
        if !torchscript && !holds {
            let name = self.global_name(class);
            self.metadata(segments, format!("<{name} object: not weights, not read>"));
            return Ok(());
        }
        if self.holds_tensor(args, depth + 1)? {
            segments.push("args".to_owned());
            self.walk(args, segments, depth + 1)?;
            segments.pop();
        }
        if let Some(s) = state {
            match self.value(s) {
                // `(dict_state, slot_state)`, pickle's convention for objects with slots.
                Value::Tuple(parts) if parts.len() == 2 => {
                    for &p in parts {
                        self.walk(p, segments, depth + 1)?;
                    }
                }
                _ => self.walk(s, segments, depth + 1)?,
            }
        }
        Ok(())
    }

    fn int(&self, id: Id, segments: &[String], what: &'static str) -> Result<u64, Error> {
        match self.value(id) {
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            _ => Err(self.tensor_err(
                segments,
                Problem::Malformed {
                    what,
                    expected: "a non-negative integer",
                },
            )),
        }
    }

    fn dims(&self, id: Id, segments: &[String], what: &'static str) -> Result<Vec<usize>, Error> {
        let items = match self.value(id) {
            Value::Tuple(v) | Value::List(v) => v,
            _ => {
                return Err(self.tensor_err(
                    segments,
                    Problem::Malformed {
                        what,
                        expected: "a tuple of non-negative integers",
                    },
                ))
            }
        };
        if items.len() > self.limits.max_rank {
            return Err(self.tensor_err(
                segments,
                TensorProblem::RankTooLarge {
                    rank: items.len(),
                    limit: self.limits.max_rank,
                },
            ));
        }
        items
            .iter()
            .map(|&i| {
                let v = self.int(i, segments, what)?;
                usize::try_from(v).map_err(|_| {
                    self.tensor_err(segments, TensorProblem::ShapeOverflow(vec![usize::MAX]))
                })
            })
            .collect()
    }

    /// The tensor a rebuild call (or a bare storage) describes.
    fn tensor(&mut self, id: Id, segments: &[String], depth: usize) -> Result<TensorDecl, Error> {
        match self.value(id) {
            Value::Call { func, args, .. } => self.rebuild(*func, *args, segments, depth),
            Value::PersId(_) => {
                // A bare storage (`torch.save(t.untyped_storage())`): a 1-D tensor of it.
                let s = self.storage(id, segments)?;
                let numel = usize::try_from(s.numel).map_err(|_| {
                    self.tensor_err(segments, TensorProblem::ShapeOverflow(vec![usize::MAX]))
                })?;
                let dtype = s.dtype;
                self.layout(segments, s, dtype, 0, vec![numel], vec![1])
            }
            _ => Err(self.tensor_err(
                segments,
                Problem::Malformed {
                    what: "tensor",
                    expected: "a tensor-rebuild call",
                },
            )),
        }
    }

    /// `func(*args)` for a tensor-rebuild function `func` (an index into the globals).
    fn rebuild(
        &mut self,
        func: u32,
        args: Id,
        segments: &[String],
        depth: usize,
    ) -> Result<TensorDecl, Error> {
        if depth > MAX_DEPTH {
            return Err(self.header(HeaderProblem::TooDeep {
                depth,
                limit: MAX_DEPTH,
            }));
        }
        let malformed = |w: &Self, expected| {
            w.tensor_err(
                segments,
                Problem::Malformed {
                    what: "tensor-rebuild arguments",
                    expected,
                },
            )
        };
        let Some(GlobalKind::Rebuild(kind)) = self.global_kind(func) else {
            return Err(malformed(self, "a tensor-rebuild function"));
        };
        let Value::Tuple(a) = self.value(args) else {
            return Err(malformed(self, "an argument tuple"));
        };
        match kind {
            Rebuild::V1 | Rebuild::V2 | Rebuild::V3 => {
                let need = if kind == Rebuild::V3 { 7 } else { 4 };
                if a.len() < need {
                    return Err(malformed(
                        self,
                        "(storage, storage_offset, size, stride, …) with all required arguments",
                    ));
                }
                let s = self.storage(a[0], segments)?;
                let offset = self.int(a[1], segments, "storage offset")?;
                let shape = self.dims(a[2], segments, "size")?;
                let stride = self.dims(a[3], segments, "stride")?;
                let dtype = if kind == Rebuild::V3 {
                    self.v3_dtype(a[6], segments)?
                } else {
                    s.dtype
                };
                self.layout(segments, s, dtype, offset, shape, stride)
            }
            Rebuild::Parameter => {
                let Some(&data) = a.first() else {
                    return Err(malformed(self, "(data, requires_grad, backward_hooks)"));
                };
                self.tensor(data, segments, depth + 1)
            }
            Rebuild::FromType => {
                // (func, new_type, args, state): the tensor is func(*args); new_type is an
                // allowlisted tensor class (anything else was refused as a global).
                let (Some(&f), Some(&inner)) = (a.first(), a.get(2)) else {
                    return Err(malformed(self, "(func, new_type, args, state)"));
                };
                let Value::Global(f) = self.value(f) else {
                    return Err(malformed(self, "a tensor-rebuild function as func"));
                };
                self.rebuild(*f, inner, segments, depth + 1)
            }
            Rebuild::Unsupported => Err(self.header(HeaderProblem::Unsupported {
                what: format!("tensor `{}` ({})", join(segments), self.global_name(func)),
                reason: "quantized, sparse, nested and device-specific tensors are not read",
            })),
        }
    }

    /// The `dtype` argument of `_rebuild_tensor_v3`.
    fn v3_dtype(&self, id: Id, segments: &[String]) -> Result<Dtype, Error> {
        if let Value::Global(g) = self.value(id) {
            match self.global_kind(*g) {
                Some(GlobalKind::Dtype(TorchDtype::Known(d))) => return Ok(d),
                Some(GlobalKind::Dtype(TorchDtype::Unsupported)) => {
                    return Err(self.tensor_err(
                        segments,
                        Problem::UnsupportedDtype {
                            dtype: self.global_name(*g),
                            reason: "weightkin has no such element type",
                        },
                    ))
                }
                _ => {}
            }
        }
        Err(self.tensor_err(
            segments,
            Problem::Malformed {
                what: "tensor-rebuild arguments",
                expected: "a torch dtype as 7th argument",
            },
        ))
    }

    /// The storage a persistent id names, registering its declaration.
    fn storage(&mut self, id: Id, segments: &[String]) -> Result<StorageUse, Error> {
        let malformed = |w: &Self| {
            w.tensor_err(
                segments,
                Problem::Malformed {
                    what: "storage reference",
                    expected: "(\"storage\", storage_type, key, location, numel[, view])",
                },
            )
        };
        let Value::PersId(p) = self.value(id) else {
            return Err(malformed(self));
        };
        let Value::Tuple(t) = self.value(*p) else {
            return Err(malformed(self));
        };
        let text = |v: &Value| match v {
            Value::Str(s) => Some(s.to_string()),
            Value::Bytes(b) => std::str::from_utf8(b).ok().map(str::to_owned),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        };
        match t.first().map(|&i| self.value(i)).and_then(text).as_deref() {
            Some("storage") => {}
            Some("module") => {
                return Err(self.header(HeaderProblem::Unsupported {
                    what: "module source code in a legacy checkpoint".to_owned(),
                    reason: "a pickled module (torch.save(model)) is code, not weights",
                }))
            }
            _ => return Err(malformed(self)),
        }
        if t.len() < 5 {
            return Err(malformed(self));
        }
        let Value::Global(g) = self.value(t[1]) else {
            return Err(malformed(self));
        };
        let type_name = self
            .pickle
            .global(*g)
            .map(|g| g.name.clone())
            .unwrap_or_default();
        let dtype = match self.global_kind(*g) {
            Some(GlobalKind::Storage(Some(d))) => d,
            Some(GlobalKind::Storage(None)) => {
                return Err(self.tensor_err(
                    segments,
                    Problem::UnsupportedDtype {
                        dtype: self.global_name(*g),
                        reason: "quantized and complex128 storages are not read",
                    },
                ))
            }
            _ => return Err(malformed(self)),
        };
        let key = self.value(t[2]);
        let Some(key) = text(key) else {
            return Err(malformed(self));
        };
        let numel = self.int(t[4], segments, "storage size")?;
        let decl = StorageDecl {
            type_name,
            dtype,
            numel,
        };
        match self.out.storages.get(&key) {
            Some(first) if *first != decl => {
                return Err(self.tensor_err(
                    segments,
                    Problem::StorageConflict {
                        storage: key,
                        first: format!("{} of {} elements", first.type_name, first.numel),
                        second: format!("{} of {} elements", decl.type_name, decl.numel),
                    },
                ))
            }
            Some(_) => {}
            None => {
                self.out.storages.insert(key.clone(), decl.clone());
            }
        }
        let elsize = elsize(dtype);
        let overflow = || self.tensor_err(segments, TensorProblem::ShapeOverflow(vec![usize::MAX]));
        let total = numel.checked_mul(elsize).ok_or_else(overflow)?;
        // Legacy view metadata: (view_key, offset, size) in elements of the root storage
        // (`torch/serialization.py`, `_legacy_load.persistent_load`).
        let (view_offset, view_numel) = match t.get(5).map(|&v| self.value(v)) {
            None | Some(Value::None) => (0, numel),
            Some(Value::Tuple(v)) if v.len() == 3 => {
                let off = self.int(v[1], segments, "storage view offset")?;
                let n = self.int(v[2], segments, "storage view size")?;
                if off.checked_add(n).is_none_or(|end| end > numel) {
                    return Err(self.tensor_err(
                        segments,
                        Problem::StorageTooShort {
                            storage: key,
                            needed: off.saturating_add(n).saturating_mul(elsize),
                            available: total,
                        },
                    ));
                }
                (off, n)
            }
            Some(_) => return Err(malformed(self)),
        };
        Ok(StorageUse {
            key,
            dtype,
            numel: view_numel,
            byte_offset: view_offset.checked_mul(elsize).ok_or_else(overflow)?,
        })
    }

    fn layout(
        &self,
        segments: &[String],
        s: StorageUse,
        dtype: Dtype,
        offset: u64,
        shape: Vec<usize>,
        stride: Vec<usize>,
    ) -> Result<TensorDecl, Error> {
        if shape.len() != stride.len() {
            return Err(self.tensor_err(segments, Problem::StrideMismatch { shape, stride }));
        }
        let overflow = |shape: &[usize]| {
            self.tensor_err(segments, TensorProblem::ShapeOverflow(shape.to_vec()))
        };
        let numel = checked_numel(&shape).ok_or_else(|| overflow(&shape))?;
        let size = elsize(dtype);
        let storage_bytes = s
            .numel
            .checked_mul(elsize(s.dtype))
            .ok_or_else(|| overflow(&shape))?;
        // Bytes the view touches: offset + Σ (size_i − 1)·stride_i + 1 elements
        // (`at::detail::computeStorageNbytes`); nothing when it has no elements.
        // Saturating: a view whose extent overflows u64 reaches past every storage, and is
        // reported as such below.
        let needed = if numel == 0 {
            0
        } else {
            let mut last = offset;
            for (&d, &st) in shape.iter().zip(&stride) {
                last = last.saturating_add((d as u64 - 1).saturating_mul(st as u64));
            }
            last.saturating_add(1).saturating_mul(size)
        };
        if needed > storage_bytes {
            return Err(self.tensor_err(
                segments,
                Problem::StorageTooShort {
                    storage: s.key,
                    needed,
                    available: storage_bytes,
                },
            ));
        }
        let byte_offset = offset
            .checked_mul(size)
            .and_then(|o| o.checked_add(s.byte_offset))
            .ok_or_else(|| overflow(&shape))?;
        Ok(TensorDecl {
            segments: segments.to_vec(),
            storage: s.key,
            storage_dir: StorageDir::Data,
            dtype,
            byte_offset,
            storage_bytes: storage_bytes.saturating_add(s.byte_offset),
            shape,
            stride,
            numel,
        })
    }
}

/// A storage as one tensor uses it (for a legacy view: the window of the root storage).
#[derive(Debug, Clone)]
struct StorageUse {
    key: String,
    dtype: Dtype,
    /// Elements in the window.
    numel: u64,
    /// Byte offset of the window in the root storage.
    byte_offset: u64,
}

/// Bytes per element. Every dtype a storage or `_rebuild_tensor_v3` maps to is a whole
/// number of bytes.
pub fn elsize(dtype: Dtype) -> u64 {
    dtype.bits().div_ceil(8)
}

/// The prefix of keys to strip from the root dict: the chain of wrapper entries
/// (`state_dict`, `model`, …) that hold the tensors. See [`WRAPPER_KEYS`].
pub fn plan_unnest(pickle: &Pickle, path: &Path, limits: &Limits) -> Result<Vec<String>, Error> {
    let mut w = Walker {
        pickle,
        path,
        limits,
        torchscript: false,
        out: Walked::default(),
        visits: 0,
        max_visits: u64::MAX,
        holds: vec![Holds::Unknown; pickle.values.len()],
    };
    let mut level = pickle.root;
    let mut strip = Vec::new();
    // Wrappers nest rarely more than twice (`{"model": {"state_dict": …}}`).
    for _ in 0..4 {
        let Value::Dict { items, .. } = pickle.get(level) else {
            break;
        };
        let mut holders = Vec::new();
        for &(k, v) in items {
            if w.holds_tensor(v, 1)? {
                holders.push((w.key(k), v));
            }
        }
        let chosen = WRAPPER_KEYS.iter().find_map(|wanted| {
            holders
                .iter()
                .find(|(k, v)| k == wanted && matches!(pickle.get(*v), Value::Dict { .. }))
        });
        match chosen {
            Some((k, v)) => {
                strip.push(k.clone());
                level = *v;
            }
            None => break,
        }
    }
    Ok(strip)
}

/// A tensor with its presented name.
#[derive(Debug, Clone)]
pub struct Named {
    /// The tensor.
    pub decl: TensorDecl,
    /// Its name after un-nesting and prefix stripping.
    pub name: String,
    /// Its stored path, when it differs from `name`.
    pub stored: Option<String>,
}

/// Names tensors: strips the wrapper keys `strip` (from [`plan_unnest`]) and any wrapper
/// prefix shared by every tensor of that group, and says what it did.
pub fn name(tensors: Vec<TensorDecl>, strip: &[String]) -> (Vec<Named>, Vec<Transform>) {
    let mut transforms = Vec::new();
    let mut named: Vec<(Named, bool)> = tensors
        .into_iter()
        .map(|decl| {
            let stored = if decl.segments.is_empty() {
                "tensor".to_owned()
            } else {
                join(&decl.segments)
            };
            let in_group = strip.is_empty() || decl.segments.starts_with(strip);
            let name = if !strip.is_empty() && in_group {
                join(&decl.segments[strip.len()..])
            } else {
                stored.clone()
            };
            (
                Named {
                    decl,
                    name,
                    stored: Some(stored),
                },
                in_group,
            )
        })
        .collect();
    if !strip.is_empty() {
        let n = named.iter().filter(|(_, g)| *g).count();
        transforms.push(Transform {
            name: "unnest-state-dict".to_owned(),
            detail: format!(
                "tensors under the checkpoint's `{}` entry are named without that prefix; \
                 its other top-level entries keep their full path, and non-tensor values are \
                 listed as metadata",
                strip.join(".")
            ),
            tensors: n,
        });
    }
    for (prefix, why) in WRAPPER_PREFIXES {
        let group: Vec<_> = named.iter().filter(|(_, g)| *g).collect();
        if group.is_empty()
            || !group
                .iter()
                .all(|(t, _)| t.name.starts_with(prefix) && t.name.len() > prefix.len())
        {
            continue;
        }
        let n = group.len();
        for (t, g) in named.iter_mut() {
            if *g {
                t.name = t.name[prefix.len()..].to_owned();
            }
        }
        transforms.push(Transform {
            name: "strip-prefix".to_owned(),
            detail: format!("prefix `{prefix}` removed from every tensor name: {why}"),
            tensors: n,
        });
    }
    let named = named
        .into_iter()
        .map(|(mut t, _)| {
            if t.stored.as_deref() == Some(t.name.as_str()) {
                t.stored = None;
            }
            t
        })
        .collect();
    (named, transforms)
}
