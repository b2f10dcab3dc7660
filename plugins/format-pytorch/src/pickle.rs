//! A pickle reader that interprets, never executes.
//!
//! Python's `pickle` is a small stack machine whose `GLOBAL`/`STACK_GLOBAL` opcodes import any
//! attribute of any module and whose `REDUCE`, `NEWOBJ`, `INST`, `OBJ` and `BUILD` opcodes
//! call it. That is how a checkpoint runs `os.system`. This reader implements every opcode of
//! protocols 0–5 (Python's `Lib/pickletools.py` documents each) as data manipulation only:
//!
//! * a global is looked up in a fixed allowlist ([`Global`]); anything else stops the read
//!   with [`Error::Refused`] naming the module and attribute, before any later opcode runs;
//! * a "call" of an allowlisted global is either evaluated here, when it is a pure data
//!   constructor (`collections.OrderedDict`, `set`, `torch.Size`, `_codecs.encode`, the
//!   TorchScript list builders), or recorded as a [`Value::Call`] or [`Value::Object`] node
//!   for the torch layer to interpret (tensor rebuild functions) or report (data-only
//!   classes such as `argparse.Namespace`);
//! * persistent ids (PyTorch's references to tensor storages) become [`Value::PersId`]
//!   nodes.
//!
//! Values live in one arena and the stack, memo and containers hold indices into it, so
//! `DUP` and memo lookups alias exactly as CPython's references do (a later `SETITEMS` or
//! `BUILD` on a memoised dict is seen through every reference), no lookup copies anything,
//! and dropping a deeply nested structure cannot overflow the stack. Every value is created
//! by one opcode, so memory is proportional to the length of the stream, which the caller
//! bounds with [`weightkin_core::Limits::max_header_bytes`].
//!
//! The allowlist follows PyTorch's own `weights_only` unpickler
//! (`torch/_weights_only_unpickler.py`, `_get_allowed_globals`), the loader `torch.load` uses
//! by default since PyTorch 2.6, minus what weightkin has no use for, plus TorchScript's
//! `__torch__.*` module classes (only inside a TorchScript archive) and a few data-only
//! classes that appear in training checkpoints' metadata.

use std::collections::HashMap;

use weightkin_core::Dtype;

use crate::PickleProblem;

/// Index of a value in [`Pickle::values`].
pub type Id = u32;

/// A pickle value. Containers hold [`Id`]s of other values.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// A larger integer: little-endian two's-complement bytes, as `LONG1`/`LONG4` store it.
    BigInt(Box<[u8]>),
    /// A float.
    Float(f64),
    /// A text string.
    Str(Box<str>),
    /// A byte string (protocol 3+ `bytes`, or a Python 2 `str` that is not UTF-8).
    Bytes(Box<[u8]>),
    /// A tuple.
    Tuple(Vec<Id>),
    /// A list.
    List(Vec<Id>),
    /// A set or frozenset, in stream order.
    Set(Vec<Id>),
    /// A dict or `OrderedDict`, in insertion order. `attrs` is the state a `BUILD` set on it
    /// (PyTorch stores `state_dict._metadata` that way).
    Dict {
        /// Key/value pairs in the order the stream set them.
        items: Vec<(Id, Id)>,
        /// Instance attributes set by `BUILD`.
        attrs: Option<Id>,
    },
    /// A global, resolved against the allowlist; index into [`Pickle::globals`].
    Global(u32),
    /// A persistent id (PyTorch: a storage reference tuple).
    PersId(Id),
    /// A call of an allowlisted tensor-rebuild function, not evaluated.
    Call {
        /// Index into [`Pickle::globals`].
        func: u32,
        /// The argument tuple.
        args: Id,
        /// State set by a later `BUILD`, if any.
        state: Option<Id>,
    },
    /// An instance of an allowlisted class (TorchScript module, data-only class), built by
    /// `REDUCE`, `NEWOBJ`, `INST` or `OBJ`, never by running its code.
    Object {
        /// Index into [`Pickle::globals`].
        class: u32,
        /// Constructor arguments.
        args: Id,
        /// State set by `BUILD`.
        state: Option<Id>,
    },
}

impl Value {
    /// Short name of the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Dict { .. } => "dict",
            Value::Global(_) => "global",
            Value::PersId(_) => "persistent id",
            Value::Call { .. } => "tensor",
            Value::Object { .. } => "object",
        }
    }
}

/// Element types a `torch.<dtype>` global can name (the `dtype` argument of
/// `_rebuild_tensor_v3`, or a value in a config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchDtype {
    /// A dtype weightkin represents.
    Known(Dtype),
    /// A dtype it does not (complex128, sub-byte and quantized types).
    Unsupported,
}

/// What an allowlisted global is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalKind {
    /// `collections.OrderedDict`, `collections.Counter`: calling it makes a dict.
    Dict,
    /// `builtins.set` / `frozenset` (`__builtin__` in protocol 2 from Python 2).
    Set,
    /// `_codecs.encode`: how protocol 2 spells `bytes` (`encode(text, "latin1")`).
    CodecsEncode,
    /// `torch.Size`: a tuple.
    TorchSize,
    /// TorchScript list builders and `restore_type_tag` (`torch.jit._pickle`): identity on
    /// their first argument.
    JitIdentity,
    /// A storage type (`torch.FloatStorage`, …); `None` when weightkin cannot represent its
    /// element type.
    Storage(Option<Dtype>),
    /// A `torch.<dtype>` object.
    Dtype(TorchDtype),
    /// `torch.Tensor`, `torch.nn.parameter.Parameter`: the `new_type` of
    /// `_rebuild_from_type_v2`.
    TensorType,
    /// A function that rebuilds a tensor.
    Rebuild(Rebuild),
    /// A TorchScript class (`__torch__.*`): compiled TorchScript, defined by the archive's
    /// `code/`, never Python.
    TorchScriptClass,
    /// A class or function that only carries data (`argparse.Namespace`, numpy scalars,
    /// `torch.device`, quantization schemes): kept as an opaque object.
    Inert,
}

/// The tensor-rebuild functions PyTorch pickles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebuild {
    /// `torch._utils._rebuild_tensor(storage, offset, size, stride)` (PyTorch < 0.4).
    V1,
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
    /// backward_hooks[, metadata])`.
    V2,
    /// `torch._utils._rebuild_tensor_v3(storage, offset, size, stride, requires_grad,
    /// backward_hooks, dtype[, metadata])`, for dtypes without a typed storage class.
    V3,
    /// `torch._utils._rebuild_parameter(data, requires_grad, backward_hooks)` and
    /// `_rebuild_parameter_with_state(…, state)`: the data is the first argument.
    Parameter,
    /// `torch._tensor._rebuild_from_type_v2(func, new_type, args, state)`: `func(*args)`.
    FromType,
    /// A tensor kind weightkin does not read (quantized, sparse, nested, meta, …).
    Unsupported,
}

/// A global named in the stream, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// Module, as written.
    pub module: String,
    /// Attribute, as written.
    pub name: String,
    /// What it is.
    pub kind: GlobalKind,
}

impl Global {
    /// `module.name`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }
}

/// Storage classes (`torch/storage.py`, `_dtype_to_storage_type_map`) and their element
/// types. Quantized and complex128 storages have no [`Dtype`].
const STORAGES: &[(&str, Option<Dtype>)] = &[
    ("DoubleStorage", Some(Dtype::F64)),
    ("FloatStorage", Some(Dtype::F32)),
    ("HalfStorage", Some(Dtype::F16)),
    ("BFloat16Storage", Some(Dtype::BF16)),
    ("LongStorage", Some(Dtype::I64)),
    ("IntStorage", Some(Dtype::I32)),
    ("ShortStorage", Some(Dtype::I16)),
    ("CharStorage", Some(Dtype::I8)),
    ("ByteStorage", Some(Dtype::U8)),
    ("BoolStorage", Some(Dtype::BOOL)),
    ("ComplexFloatStorage", Some(Dtype::C64)),
    ("UntypedStorage", Some(Dtype::U8)),
    ("ComplexDoubleStorage", None),
    ("QInt8Storage", None),
    ("QUInt8Storage", None),
    ("QInt32Storage", None),
    ("QUInt4x2Storage", None),
    ("QUInt2x4Storage", None),
];

/// `torch.<dtype>` names as `torch.dtype.__reduce__` writes them (the canonical names).
const DTYPES: &[(&str, Option<Dtype>)] = &[
    ("float64", Some(Dtype::F64)),
    ("float32", Some(Dtype::F32)),
    ("float16", Some(Dtype::F16)),
    ("bfloat16", Some(Dtype::BF16)),
    ("int64", Some(Dtype::I64)),
    ("int32", Some(Dtype::I32)),
    ("int16", Some(Dtype::I16)),
    ("int8", Some(Dtype::I8)),
    ("uint8", Some(Dtype::U8)),
    ("uint16", Some(Dtype::U16)),
    ("uint32", Some(Dtype::U32)),
    ("uint64", Some(Dtype::U64)),
    ("bool", Some(Dtype::BOOL)),
    ("complex64", Some(Dtype::C64)),
    ("float8_e4m3fn", Some(Dtype::F8_E4M3)),
    ("float8_e5m2", Some(Dtype::F8_E5M2)),
    ("float8_e4m3fnuz", Some(Dtype::F8_E4M3FNUZ)),
    ("float8_e5m2fnuz", Some(Dtype::F8_E5M2FNUZ)),
    ("float8_e8m0fnu", Some(Dtype::F8_E8M0)),
    ("complex128", None),
    ("complex32", None),
    ("float4_e2m1fn_x2", None),
    ("qint8", None),
    ("quint8", None),
    ("qint32", None),
    ("quint4x2", None),
    ("quint2x4", None),
    ("bits1x8", None),
    ("bits2x4", None),
    ("bits4x2", None),
    ("bits8", None),
    ("bits16", None),
    ("int1", None),
    ("int2", None),
    ("int3", None),
    ("int4", None),
    ("int5", None),
    ("int6", None),
    ("int7", None),
    ("uint1", None),
    ("uint2", None),
    ("uint3", None),
    ("uint4", None),
    ("uint5", None),
    ("uint6", None),
    ("uint7", None),
];

/// Looks `module.name` up in the allowlist. `torchscript` admits `__torch__.*` classes.
pub fn resolve(module: &str, name: &str, torchscript: bool) -> Option<GlobalKind> {
    use GlobalKind as K;
    let kind = match (module, name) {
        ("collections", "OrderedDict" | "Counter") => K::Dict,
        ("builtins" | "__builtin__", "set" | "frozenset") => K::Set,
        ("builtins" | "__builtin__", "complex" | "bytearray" | "slice") => K::Inert,
        ("_codecs", "encode") => K::CodecsEncode,
        ("torch", "Size") => K::TorchSize,
        ("torch", "device") => K::Inert,
        ("torch", "Tensor") | ("torch._tensor", "Tensor") | ("torch.nn.parameter", "Parameter") => {
            K::TensorType
        }
        ("torch" | "torch.cuda", storage) if storage.ends_with("Storage") => {
            K::Storage(STORAGES.iter().find(|(n, _)| *n == storage)?.1)
        }
        ("torch", "per_tensor_affine" | "per_channel_affine" | "per_tensor_symmetric")
        | ("torch", "per_channel_symmetric" | "per_channel_affine_float_qparams")
        | ("torch.serialization", "_get_layout")
        | ("torch", "sparse_coo" | "sparse_csr" | "sparse_csc" | "sparse_bsr" | "sparse_bsc")
        | ("torch", "strided") => K::Inert,
        ("torch", dtype) => K::Dtype(match DTYPES.iter().find(|(n, _)| *n == dtype)?.1 {
            Some(d) => TorchDtype::Known(d),
            None => TorchDtype::Unsupported,
        }),
        ("torch._utils", "_rebuild_tensor") => K::Rebuild(Rebuild::V1),
        ("torch._utils", "_rebuild_tensor_v2") => K::Rebuild(Rebuild::V2),
        ("torch._utils", "_rebuild_tensor_v3") => K::Rebuild(Rebuild::V3),
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            K::Rebuild(Rebuild::Parameter)
        }
        ("torch._tensor", "_rebuild_from_type_v2") => K::Rebuild(Rebuild::FromType),
        (
            "torch._utils",
            "_rebuild_qtensor"
            | "_rebuild_sparse_tensor"
            | "_rebuild_sparse_csr_tensor"
            | "_rebuild_nested_tensor"
            | "_rebuild_meta_tensor_no_storage"
            | "_rebuild_wrapper_subclass"
            | "_rebuild_device_tensor_from_numpy"
            | "_rebuild_device_tensor_from_cpu_tensor"
            | "_rebuild_xla_tensor"
            | "_rebuild_mps_tensor",
        )
        | ("torch.jit._pickle", "build_tensor_from_id") => K::Rebuild(Rebuild::Unsupported),
        (
            "torch.jit._pickle",
            "build_intlist" | "build_tensorlist" | "build_doublelist" | "build_boollist"
            | "restore_type_tag",
        ) => K::JitIdentity,
        ("argparse", "Namespace") => K::Inert,
        ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar" | "_reconstruct")
        | ("numpy", "dtype" | "ndarray") => K::Inert,
        ("numpy.dtypes", class) if class.ends_with("DType") => K::Inert,
        (m, _) if torchscript && (m == "__torch__" || m.starts_with("__torch__.")) => {
            K::TorchScriptClass
        }
        _ => return None,
    };
    Some(kind)
}

/// A parsed pickle: the value arena, the globals it named and the value `STOP` returned.
#[derive(Debug, Clone)]
pub struct Pickle {
    /// Every value the stream created.
    pub values: Vec<Value>,
    /// Every global it named, resolved.
    pub globals: Vec<Global>,
    /// The value `STOP` returned.
    pub root: Id,
    /// Offset just past the `STOP` opcode (a legacy checkpoint is several pickles in a row).
    pub end: usize,
    /// Highest `PROTO` seen (0 if none).
    pub protocol: u8,
}

impl Pickle {
    /// The value `id`; an id the parser produced is always valid, and an invalid one reads as
    /// `None` rather than panicking.
    pub fn get(&self, id: Id) -> &Value {
        self.values.get(id as usize).unwrap_or(&Value::None)
    }

    /// The global at index `g`.
    pub fn global(&self, g: u32) -> Option<&Global> {
        self.globals.get(g as usize)
    }
}

/// Why a pickle was not read.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The stream is malformed at `offset`.
    At {
        /// Offset of the opcode, relative to the start of the stream.
        offset: u64,
        /// What is wrong.
        problem: PickleProblem,
    },
    /// The stream names a global that is not on the allowlist.
    Refused {
        /// Module.
        module: String,
        /// Attribute.
        name: String,
    },
}

/// Parses one pickle starting at `data[start]`, up to and including its `STOP`.
/// `torchscript` admits TorchScript's `__torch__.*` classes.
pub fn parse(data: &[u8], start: usize, torchscript: bool) -> Result<Pickle, Error> {
    let mut m = Machine {
        data,
        pos: start,
        op_start: start,
        base: start,
        torchscript,
        values: Vec::new(),
        globals: Vec::new(),
        global_index: HashMap::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        protocol: 0,
    };
    m.run()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed (for errors).
    op_start: usize,
    /// Offset of the stream's first byte (errors are relative to it).
    base: usize,
    torchscript: bool,
    values: Vec<Value>,
    globals: Vec<Global>,
    global_index: HashMap<(String, String), u32>,
    stack: Vec<Id>,
    /// Stack heights at each open `MARK`, innermost last.
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
    protocol: u8,
}

type Step<T> = Result<T, Error>;

impl<'a> Machine<'a> {
    fn fail<T>(&self, problem: PickleProblem) -> Step<T> {
        Err(Error::At {
            offset: (self.op_start - self.base) as u64,
            problem,
        })
    }

    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        let data = self.data;
        match self
            .pos
            .checked_add(n)
            .and_then(|end| data.get(self.pos..end))
        {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => self.fail(PickleProblem::Truncated),
        }
    }

    fn take_array<const N: usize>(&mut self) -> Step<[u8; N]> {
        let bytes = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(bytes);
        Ok(a)
    }

    fn u8(&mut self) -> Step<u8> {
        Ok(self.take_array::<1>()?[0])
    }

    /// A length-prefixed payload: checks the declared length against what remains before
    /// taking (and before anything is allocated from it).
    fn payload(&mut self, opcode: &'static str, len: u64) -> Step<&'a [u8]> {
        let available = self.data.len().saturating_sub(self.pos) as u64;
        if len > available {
            return self.fail(PickleProblem::LengthPastEnd {
                opcode,
                declared: len,
                available,
            });
        }
        // `len <= available`, which fits in usize.
        self.take(len as usize)
    }

    /// A `\n`-terminated line (protocol 0 arguments), without the newline.
    fn line(&mut self) -> Step<&'a [u8]> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                let line = &rest[..n];
                self.pos += n + 1;
                Ok(line)
            }
            None => self.fail(PickleProblem::Truncated),
        }
    }

    fn text_line(&mut self, opcode: &'static str) -> Step<&'a str> {
        let line = self.line()?;
        match std::str::from_utf8(line) {
            Ok(s) => Ok(s),
            Err(_) => self.fail(PickleProblem::BadText(opcode)),
        }
    }

    fn new_value(&mut self, v: Value) -> Step<Id> {
        let Ok(id) = Id::try_from(self.values.len()) else {
            return self.fail(PickleProblem::UnsupportedOpcode(
                "more than 2^32 values in one pickle",
            ));
        };
        self.values.push(v);
        Ok(id)
    }

    fn push(&mut self, v: Value) -> Step<()> {
        let id = self.new_value(v)?;
        self.stack.push(id);
        Ok(())
    }

    /// Height below which `pop` must not go: the innermost mark.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self, opcode: &'static str) -> Step<Id> {
        if self.stack.len() <= self.floor() {
            return self.fail(PickleProblem::StackUnderflow(opcode));
        }
        match self.stack.pop() {
            Some(id) => Ok(id),
            None => self.fail(PickleProblem::StackUnderflow(opcode)),
        }
    }

    fn top(&self, opcode: &'static str) -> Step<Id> {
        if self.stack.len() <= self.floor() {
            return self.fail(PickleProblem::StackUnderflow(opcode));
        }
        match self.stack.last() {
            Some(&id) => Ok(id),
            None => self.fail(PickleProblem::StackUnderflow(opcode)),
        }
    }

    /// Pops everything above the innermost mark, and the mark.
    fn pop_mark(&mut self, opcode: &'static str) -> Step<Vec<Id>> {
        let Some(mark) = self.marks.pop() else {
            return self.fail(PickleProblem::NoMark(opcode));
        };
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn value(&self, id: Id) -> &Value {
        self.values.get(id as usize).unwrap_or(&Value::None)
    }

    fn value_mut(&mut self, id: Id) -> Option<&mut Value> {
        self.values.get_mut(id as usize)
    }

    fn wrong<T>(&self, opcode: &'static str, expected: &'static str, found: Id) -> Step<T> {
        self.fail(PickleProblem::WrongType {
            opcode,
            expected,
            found: self.value(found).kind(),
        })
    }

    fn memo_get(&mut self, opcode: &'static str, key: u64) -> Step<()> {
        match self.memo.get(&key) {
            Some(&id) => {
                self.stack.push(id);
                Ok(())
            }
            None => self.fail(PickleProblem::MissingMemo { opcode, key }),
        }
    }

    fn memo_put(&mut self, opcode: &'static str, key: u64) -> Step<()> {
        let id = self.top(opcode)?;
        self.memo.insert(key, id);
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Step<()> {
        let key = (module.to_owned(), name.to_owned());
        let index = match self.global_index.get(&key) {
            Some(&i) => i,
            None => {
                let Some(kind) = resolve(module, name, self.torchscript) else {
                    return Err(Error::Refused {
                        module: module.to_owned(),
                        name: name.to_owned(),
                    });
                };
                let i = self.globals.len() as u32;
                self.globals.push(Global {
                    module: key.0.clone(),
                    name: key.1.clone(),
                    kind,
                });
                self.global_index.insert(key, i);
                i
            }
        };
        self.push(Value::Global(index))
    }

    fn global_kind(&self, id: Id) -> Option<(u32, GlobalKind)> {
        match self.value(id) {
            Value::Global(g) => self.globals.get(*g as usize).map(|gl| (*g, gl.kind)),
            _ => None,
        }
    }

    /// The items of a one-sequence argument tuple `(items,)` or `()`.
    fn sequence_arg(&self, opcode: &'static str, args: Id) -> Step<Vec<Id>> {
        match self.value(args) {
            Value::Tuple(a) => match a.as_slice() {
                [] => Ok(Vec::new()),
                [one] => match self.value(*one) {
                    Value::List(v) | Value::Tuple(v) | Value::Set(v) => Ok(v.clone()),
                    _ => self.wrong(opcode, "a list argument", *one),
                },
                _ => self.fail(PickleProblem::WrongType {
                    opcode,
                    expected: "at most one argument",
                    found: "several",
                }),
            },
            _ => self.wrong(opcode, "an argument tuple", args),
        }
    }

    /// `REDUCE`: `callable(*args)`, evaluated only for pure data constructors.
    fn reduce(&mut self, callable: Id, args: Id) -> Step<Value> {
        const OP: &str = "REDUCE";
        let Some((g, kind)) = self.global_kind(callable) else {
            return self.wrong(OP, "an allowlisted global", callable);
        };
        match kind {
            GlobalKind::Dict => {
                let pairs = self.sequence_arg("OrderedDict", args)?;
                let mut items = Vec::with_capacity(pairs.len());
                for p in pairs {
                    match self.value(p) {
                        Value::Tuple(kv) | Value::List(kv) if kv.len() == 2 => {
                            items.push((kv[0], kv[1]));
                        }
                        _ => return self.wrong("OrderedDict", "(key, value) pairs", p),
                    }
                }
                Ok(Value::Dict { items, attrs: None })
            }
            GlobalKind::Set => Ok(Value::Set(self.sequence_arg("set", args)?)),
            GlobalKind::TorchSize => Ok(Value::Tuple(self.sequence_arg("torch.Size", args)?)),
            GlobalKind::JitIdentity => match self.value(args) {
                Value::Tuple(a) if !a.is_empty() => Ok(self.value(a[0]).clone()),
                _ => self.wrong("torch.jit._pickle", "a non-empty argument tuple", args),
            },
            GlobalKind::CodecsEncode => self.codecs_encode(args),
            GlobalKind::Rebuild(_) => Ok(Value::Call {
                func: g,
                args,
                state: None,
            }),
            GlobalKind::TorchScriptClass | GlobalKind::Inert => Ok(Value::Object {
                class: g,
                args,
                state: None,
            }),
            GlobalKind::Storage(_) | GlobalKind::Dtype(_) | GlobalKind::TensorType => {
                self.fail(PickleProblem::WrongType {
                    opcode: OP,
                    expected: "a callable",
                    found: "a type that is only ever an argument",
                })
            }
        }
    }

    /// `_codecs.encode(text, "latin1")`: protocol 2's spelling of a `bytes` object.
    fn codecs_encode(&self, args: Id) -> Step<Value> {
        const OP: &str = "_codecs.encode";
        let Value::Tuple(a) = self.value(args) else {
            return self.wrong(OP, "an argument tuple", args);
        };
        let (text, encoding) = match a.as_slice() {
            [t, e] => (self.value(*t), self.value(*e)),
            _ => return self.wrong(OP, "(text, encoding)", args),
        };
        match (text, encoding) {
            (Value::Str(t), Value::Str(e)) if matches!(&**e, "latin1" | "latin-1") => {
                let mut out = Vec::with_capacity(t.len());
                for c in t.chars() {
                    match u8::try_from(u32::from(c)) {
                        Ok(b) => out.push(b),
                        Err(_) => return self.fail(PickleProblem::BadText(OP)),
                    }
                }
                Ok(Value::Bytes(out.into()))
            }
            _ => self.fail(PickleProblem::WrongType {
                opcode: OP,
                expected: "(str, \"latin1\")",
                found: "other arguments",
            }),
        }
    }

    /// `NEWOBJ` / `INST` / `OBJ`: an instance of an allowlisted class.
    fn instantiate(&mut self, opcode: &'static str, class: Id, args: Id) -> Step<Value> {
        let Some((g, kind)) = self.global_kind(class) else {
            return self.wrong(opcode, "an allowlisted class", class);
        };
        match kind {
            GlobalKind::Dict => Ok(Value::Dict {
                items: Vec::new(),
                attrs: None,
            }),
            GlobalKind::Set => Ok(Value::Set(Vec::new())),
            GlobalKind::TorchScriptClass | GlobalKind::Inert => Ok(Value::Object {
                class: g,
                args,
                state: None,
            }),
            _ => self.fail(PickleProblem::WrongType {
                opcode,
                expected: "a class",
                found: "a function or type that cannot be instantiated this way",
            }),
        }
    }

    fn set_items(&mut self, opcode: &'static str, dict: Id, flat: Vec<Id>) -> Step<()> {
        if !flat.len().is_multiple_of(2) {
            return self.fail(PickleProblem::WrongType {
                opcode,
                expected: "key/value pairs",
                found: "an odd number of items",
            });
        }
        let found = self.value(dict).kind();
        match self.value_mut(dict) {
            Some(Value::Dict { items, .. }) => {
                items.extend(flat.chunks_exact(2).map(|kv| (kv[0], kv[1])));
                Ok(())
            }
            _ => self.fail(PickleProblem::WrongType {
                opcode,
                expected: "a dict",
                found,
            }),
        }
    }

    fn extend_list(&mut self, opcode: &'static str, list: Id, new: Vec<Id>) -> Step<()> {
        let found = self.value(list).kind();
        match self.value_mut(list) {
            Some(Value::List(items)) => {
                items.extend(new);
                Ok(())
            }
            _ => self.fail(PickleProblem::WrongType {
                opcode,
                expected: "a list",
                found,
            }),
        }
    }

    fn build(&mut self, target: Id, new_state: Id) -> Step<()> {
        let found = self.value(target).kind();
        match self.value_mut(target) {
            Some(Value::Dict { attrs: state, .. })
            | Some(Value::Object { state, .. })
            | Some(Value::Call { state, .. }) => {
                *state = Some(new_state);
                Ok(())
            }
            _ => self.fail(PickleProblem::WrongType {
                opcode: "BUILD",
                expected: "an object, dict or tensor",
                found,
            }),
        }
    }

    fn int_line(&mut self, opcode: &'static str) -> Step<Value> {
        let text = self.text_line(opcode)?.trim();
        // Protocol 0 spells booleans as `I01` / `I00` (pickletools, `INT`).
        match text {
            "01" => return Ok(Value::Bool(true)),
            "00" => return Ok(Value::Bool(false)),
            _ => {}
        }
        let digits = text.strip_suffix('L').unwrap_or(text);
        match digits.parse::<i64>() {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => self.fail(PickleProblem::BadText(opcode)),
        }
    }

    fn run(&mut self) -> Step<Pickle> {
        loop {
            self.op_start = self.pos;
            let op = self.u8()?;
            match op {
                // PROTO
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return self.fail(PickleProblem::Protocol(p));
                    }
                    self.protocol = self.protocol.max(p);
                }
                // FRAME: a length prefix for buffering; the whole stream is in memory.
                0x95 => {
                    let len = u64::from_le_bytes(self.take_array()?);
                    let available = self.data.len().saturating_sub(self.pos) as u64;
                    if len > available {
                        return self.fail(PickleProblem::LengthPastEnd {
                            opcode: "FRAME",
                            declared: len,
                            available,
                        });
                    }
                }
                // STOP
                b'.' => {
                    let root = self.pop("STOP")?;
                    return Ok(Pickle {
                        values: std::mem::take(&mut self.values),
                        globals: std::mem::take(&mut self.globals),
                        root,
                        end: self.pos,
                        protocol: self.protocol,
                    });
                }
                // MARK
                b'(' => self.marks.push(self.stack.len()),
                // POP: CPython pops the mark when nothing is above it (`load_pop`).
                b'0' => {
                    if self.stack.len() > self.floor() {
                        self.pop("POP")?;
                    } else if self.marks.pop().is_none() {
                        return self.fail(PickleProblem::StackUnderflow("POP"));
                    }
                }
                // POP_MARK
                b'1' => {
                    self.pop_mark("POP_MARK")?;
                }
                // DUP
                b'2' => {
                    let id = self.top("DUP")?;
                    self.stack.push(id);
                }
                // Constants.
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                // Integers.
                b'I' => {
                    let v = self.int_line("INT")?;
                    self.push(v)?;
                }
                b'L' => {
                    let v = self.int_line("LONG")?;
                    self.push(v)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.take_array()?);
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take_array()?);
                    self.push(Value::Int(i64::from(v)))?;
                }
                0x8a => {
                    let n = self.u8()?;
                    let bytes = self.payload("LONG1", u64::from(n))?;
                    self.push(long(bytes))?;
                }
                0x8b => {
                    let n = i32::from_le_bytes(self.take_array()?);
                    let Ok(n) = u64::try_from(n) else {
                        return self.fail(PickleProblem::BadText("LONG4"));
                    };
                    let bytes = self.payload("LONG4", n)?;
                    self.push(long(bytes))?;
                }
                // Floats.
                b'F' => {
                    let text = self.text_line("FLOAT")?;
                    match text.trim().parse::<f64>() {
                        Ok(f) => self.push(Value::Float(f))?,
                        Err(_) => return self.fail(PickleProblem::BadText("FLOAT")),
                    }
                }
                b'G' => {
                    // BINFLOAT is big-endian (pickletools).
                    let v = f64::from_be_bytes(self.take_array()?);
                    self.push(Value::Float(v))?;
                }
                // Strings.
                b'S' => {
                    let line = self.line()?;
                    match unquote(line) {
                        Some(bytes) => self.push(py2_string(bytes))?,
                        None => return self.fail(PickleProblem::BadText("STRING")),
                    }
                }
                b'T' => {
                    let n = i32::from_le_bytes(self.take_array()?);
                    let Ok(n) = u64::try_from(n) else {
                        return self.fail(PickleProblem::BadText("BINSTRING"));
                    };
                    let bytes = self.payload("BINSTRING", n)?;
                    self.push(py2_string(bytes.to_vec()))?;
                }
                b'U' => {
                    let n = self.u8()?;
                    let bytes = self.payload("SHORT_BINSTRING", u64::from(n))?;
                    self.push(py2_string(bytes.to_vec()))?;
                }
                b'V' => {
                    let line = self.line()?;
                    match raw_unicode_escape(line) {
                        Some(s) => self.push(Value::Str(s.into()))?,
                        None => return self.fail(PickleProblem::BadText("UNICODE")),
                    }
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.take_array()?);
                    self.unicode("BINUNICODE", u64::from(n))?;
                }
                0x8c => {
                    let n = self.u8()?;
                    self.unicode("SHORT_BINUNICODE", u64::from(n))?;
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.take_array()?);
                    self.unicode("BINUNICODE8", n)?;
                }
                b'B' => {
                    let n = u32::from_le_bytes(self.take_array()?);
                    let bytes = self.payload("BINBYTES", u64::from(n))?;
                    self.push(Value::Bytes(bytes.into()))?;
                }
                b'C' => {
                    let n = self.u8()?;
                    let bytes = self.payload("SHORT_BINBYTES", u64::from(n))?;
                    self.push(Value::Bytes(bytes.into()))?;
                }
                0x8e | 0x96 => {
                    let name = if op == 0x8e {
                        "BINBYTES8"
                    } else {
                        "BYTEARRAY8"
                    };
                    let n = u64::from_le_bytes(self.take_array()?);
                    let bytes = self.payload(name, n)?;
                    self.push(Value::Bytes(bytes.into()))?;
                }
                // Containers.
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark("TUPLE")?;
                    self.push(Value::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let name = ["TUPLE1", "TUPLE2", "TUPLE3"][n - 1];
                    let mut items = vec![0; n];
                    for slot in items.iter_mut().rev() {
                        *slot = self.pop(name)?;
                    }
                    self.push(Value::Tuple(items))?;
                }
                b']' => self.push(Value::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark("LIST")?;
                    self.push(Value::List(items))?;
                }
                b'a' => {
                    let item = self.pop("APPEND")?;
                    let list = self.top("APPEND")?;
                    self.extend_list("APPEND", list, vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark("APPENDS")?;
                    let list = self.top("APPENDS")?;
                    self.extend_list("APPENDS", list, items)?;
                }
                b'}' => self.push(Value::Dict {
                    items: Vec::new(),
                    attrs: None,
                })?,
                b'd' => {
                    let flat = self.pop_mark("DICT")?;
                    let dict = self.new_value(Value::Dict {
                        items: Vec::new(),
                        attrs: None,
                    })?;
                    self.set_items("DICT", dict, flat)?;
                    self.stack.push(dict);
                }
                b's' => {
                    let value = self.pop("SETITEM")?;
                    let key = self.pop("SETITEM")?;
                    let dict = self.top("SETITEM")?;
                    self.set_items("SETITEM", dict, vec![key, value])?;
                }
                b'u' => {
                    let flat = self.pop_mark("SETITEMS")?;
                    let dict = self.top("SETITEMS")?;
                    self.set_items("SETITEMS", dict, flat)?;
                }
                0x8f => self.push(Value::Set(Vec::new()))?,
                0x90 => {
                    let new = self.pop_mark("ADDITEMS")?;
                    let set = self.top("ADDITEMS")?;
                    let found = self.value(set).kind();
                    match self.value_mut(set) {
                        Some(Value::Set(items)) => items.extend(new),
                        _ => {
                            return self.fail(PickleProblem::WrongType {
                                opcode: "ADDITEMS",
                                expected: "a set",
                                found,
                            })
                        }
                    }
                }
                0x91 => {
                    let items = self.pop_mark("FROZENSET")?;
                    self.push(Value::Set(items))?;
                }
                // Memo.
                b'g' => {
                    let key = self.text_line("GET")?.trim().parse::<u64>();
                    match key {
                        Ok(k) => self.memo_get("GET", k)?,
                        Err(_) => return self.fail(PickleProblem::BadText("GET")),
                    }
                }
                b'h' => {
                    let k = self.u8()?;
                    self.memo_get("BINGET", u64::from(k))?;
                }
                b'j' => {
                    let k = u32::from_le_bytes(self.take_array()?);
                    self.memo_get("LONG_BINGET", u64::from(k))?;
                }
                b'p' => {
                    let key = self.text_line("PUT")?.trim().parse::<u64>();
                    match key {
                        Ok(k) => self.memo_put("PUT", k)?,
                        Err(_) => return self.fail(PickleProblem::BadText("PUT")),
                    }
                }
                b'q' => {
                    let k = self.u8()?;
                    self.memo_put("BINPUT", u64::from(k))?;
                }
                b'r' => {
                    let k = u32::from_le_bytes(self.take_array()?);
                    self.memo_put("LONG_BINPUT", u64::from(k))?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put("MEMOIZE", k)?;
                }
                // Globals: resolved against the allowlist, or the read stops here.
                b'c' => {
                    let module = self.text_line("GLOBAL")?;
                    let name = self.text_line("GLOBAL")?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop("STACK_GLOBAL")?;
                    let module = self.pop("STACK_GLOBAL")?;
                    match (self.value(module), self.value(name)) {
                        (Value::Str(m), Value::Str(n)) => {
                            let (m, n) = (m.to_string(), n.to_string());
                            self.global(&m, &n)?;
                        }
                        _ => return self.wrong("STACK_GLOBAL", "two strings", module),
                    }
                }
                // Persistent ids.
                b'P' => {
                    let text = self.text_line("PERSID")?;
                    let id = self.new_value(Value::Str(text.into()))?;
                    self.push(Value::PersId(id))?;
                }
                b'Q' => {
                    let id = self.pop("BINPERSID")?;
                    self.push(Value::PersId(id))?;
                }
                // Calls and instances: interpreted, never executed.
                b'R' => {
                    let args = self.pop("REDUCE")?;
                    let callable = self.pop("REDUCE")?;
                    let v = self.reduce(callable, args)?;
                    self.push(v)?;
                }
                0x81 => {
                    let args = self.pop("NEWOBJ")?;
                    let class = self.pop("NEWOBJ")?;
                    let v = self.instantiate("NEWOBJ", class, args)?;
                    self.push(v)?;
                }
                0x92 => {
                    let kwargs = self.pop("NEWOBJ_EX")?;
                    let args = self.pop("NEWOBJ_EX")?;
                    let class = self.pop("NEWOBJ_EX")?;
                    if !matches!(self.value(kwargs), Value::Dict { items, .. } if items.is_empty())
                    {
                        return self.fail(PickleProblem::UnsupportedOpcode(
                            "NEWOBJ_EX with keyword arguments",
                        ));
                    }
                    let v = self.instantiate("NEWOBJ_EX", class, args)?;
                    self.push(v)?;
                }
                b'i' => {
                    let module = self.text_line("INST")?;
                    let name = self.text_line("INST")?;
                    self.global(module, name)?;
                    let class = self.pop("INST")?;
                    let args = self.pop_mark("INST")?;
                    let args = self.new_value(Value::Tuple(args))?;
                    let v = self.instantiate("INST", class, args)?;
                    self.push(v)?;
                }
                b'o' => {
                    let mut items = self.pop_mark("OBJ")?;
                    if items.is_empty() {
                        return self.fail(PickleProblem::StackUnderflow("OBJ"));
                    }
                    let class = items.remove(0);
                    let args = self.new_value(Value::Tuple(items))?;
                    let v = self.instantiate("OBJ", class, args)?;
                    self.push(v)?;
                }
                b'b' => {
                    let state = self.pop("BUILD")?;
                    let target = self.top("BUILD")?;
                    self.build(target, state)?;
                }
                0x82 => return self.fail(PickleProblem::UnsupportedOpcode("EXT1")),
                0x83 => return self.fail(PickleProblem::UnsupportedOpcode("EXT2")),
                0x84 => return self.fail(PickleProblem::UnsupportedOpcode("EXT4")),
                0x97 => return self.fail(PickleProblem::UnsupportedOpcode("NEXT_BUFFER")),
                0x98 => return self.fail(PickleProblem::UnsupportedOpcode("READONLY_BUFFER")),
                other => return self.fail(PickleProblem::UnknownOpcode(other)),
            }
        }
    }

    fn unicode(&mut self, opcode: &'static str, len: u64) -> Step<()> {
        let bytes = self.payload(opcode, len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => self.push(Value::Str(s.into())),
            Err(_) => self.fail(PickleProblem::BadText(opcode)),
        }
    }
}

/// A `LONG1`/`LONG4` payload: little-endian two's complement.
fn long(bytes: &[u8]) -> Value {
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0 };
    // Fits in i64 when every byte past the eighth is sign extension of the eighth's top bit.
    let fits = bytes.len() <= 8
        || (bytes[8..].iter().all(|&b| b == fill) && (bytes[7] & 0x80 != 0) == negative);
    if fits {
        let mut buf = [fill; 8];
        for (d, s) in buf.iter_mut().zip(bytes) {
            *d = *s;
        }
        Value::Int(i64::from_le_bytes(buf))
    } else {
        Value::BigInt(bytes.into())
    }
}

/// A Python 2 `str`: text when it is UTF-8 (what `torch.load` decodes it as, with
/// `encoding="utf-8"`), else bytes.
fn py2_string(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(s) => Value::Str(s.into()),
        Err(e) => Value::Bytes(e.into_bytes().into()),
    }
}

/// The body of a protocol 0 `STRING` argument: a quoted Python 2 `repr` with backslash
/// escapes.
fn unquote(line: &[u8]) -> Option<Vec<u8>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let q = *line.first()?;
    if !(q == b'\'' || q == b'"') || line.len() < 2 || line.last() != Some(&q) {
        return None;
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let e = *body.get(i)?;
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'x' => {
                let hex = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v).ok()?);
            }
            _ => {
                out.push(b'\\');
                out.push(e);
            }
        }
    }
    Some(out)
}

/// Python's `raw-unicode-escape` codec: bytes are Latin-1 code points, except `\uXXXX` and
/// `\UXXXXXXXX` escapes.
fn raw_unicode_escape(line: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while let Some(&b) = line.get(i) {
        let width = match (b, line.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if width == 0 {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let hex = std::str::from_utf8(line.get(i + 2..i + 2 + width)?).ok()?;
        out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
        i += 2 + width;
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn parse_ok(bytes: &[u8]) -> Pickle {
        parse(bytes, 0, false).unwrap()
    }

    #[test]
    fn protocol_0_text_opcodes() {
        // pickle.dumps({"n": -3, "f": 2.5, "t": True, "s": "a\\'b"}, protocol=0)
        let p =
            parse_ok(b"(dp0\nVn\np1\nI-3\nsVf\np2\nF2.5\nsVt\np3\nI01\nsVs\np4\nS'a\\'b'\np5\ns.");
        let Value::Dict { items, .. } = p.get(p.root) else {
            panic!("not a dict")
        };
        let vals: Vec<_> = items.iter().map(|(_, v)| p.get(*v).clone()).collect();
        assert_eq!(
            vals,
            vec![
                Value::Int(-3),
                Value::Float(2.5),
                Value::Bool(true),
                Value::Str("a'b".into())
            ]
        );
    }

    #[test]
    fn long1_sign_and_width() {
        assert_eq!(long(&[0xff]), Value::Int(-1));
        assert_eq!(long(&[0x80, 0x00]), Value::Int(128));
        assert_eq!(long(&[]), Value::Int(0));
        assert_eq!(
            long(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff]),
            Value::Int(i64::MIN)
        );
        assert!(matches!(
            long(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0x00]),
            Value::BigInt(_)
        ));
    }

    #[test]
    fn memo_aliases_like_cpython() {
        // d = {}; [d, d] then d["k"] = 1 through the memo: both references see it.
        // MARK }  BINPUT 0  h0  l(LIST) -> [d, d]; h0 K1? we build: ( } q0 h0 l  h0 X'k' K1 s 0 .
        let bytes = b"(}q\x00h\x00lh\x00X\x01\x00\x00\x00kK\x01s0.";
        let p = parse_ok(bytes);
        let Value::List(items) = p.get(p.root) else {
            panic!("not a list: {:?}", p.get(p.root))
        };
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], items[1]);
        let Value::Dict { items: kv, .. } = p.get(items[0]) else {
            panic!("not a dict")
        };
        assert_eq!(kv.len(), 1);
    }

    #[test]
    fn refuses_unlisted_globals_by_name() {
        let err = parse(b"cos\nsystem\n(S'echo hi'\ntR.", 0, false).unwrap_err();
        assert_eq!(
            err,
            Error::Refused {
                module: "os".into(),
                name: "system".into()
            }
        );
        // STACK_GLOBAL, protocol 4.
        let err = parse(
            b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94.",
            0,
            false,
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::Refused { module, name } if module == "builtins" && name == "eval")
        );
        // TorchScript classes only inside TorchScript archives.
        assert!(parse(b"c__torch__.m\nM\n).", 0, false).is_err());
        assert!(parse(b"c__torch__.m\nM\n).", 0, true).is_ok());
    }

    #[test]
    fn malformed_streams_are_errors_with_offsets() {
        let cases: &[(&[u8], PickleProblem)] = &[
            (b"", PickleProblem::Truncated),
            (b"K", PickleProblem::Truncated),
            (b"N", PickleProblem::Truncated),
            (b"\xff", PickleProblem::UnknownOpcode(0xff)),
            (b"\x80\x06", PickleProblem::Protocol(6)),
            (b".", PickleProblem::StackUnderflow("STOP")),
            (b"t", PickleProblem::NoMark("TUPLE")),
            (
                b"h\x05",
                PickleProblem::MissingMemo {
                    opcode: "BINGET",
                    key: 5,
                },
            ),
            (b"\x82\x01", PickleProblem::UnsupportedOpcode("EXT1")),
            (
                b"X\xff\xff\xff\x7f",
                PickleProblem::LengthPastEnd {
                    opcode: "BINUNICODE",
                    declared: 0x7fff_ffff,
                    available: 0,
                },
            ),
            (
                b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff",
                PickleProblem::LengthPastEnd {
                    opcode: "BINBYTES8",
                    declared: u64::MAX,
                    available: 0,
                },
            ),
            (b"NN(a", PickleProblem::StackUnderflow("APPEND")),
            (b"K\x01K\x02s", PickleProblem::StackUnderflow("SETITEM")),
        ];
        for (bytes, problem) in cases {
            match parse(bytes, 0, false) {
                Err(Error::At { problem: p, .. }) => assert_eq!(&p, problem, "{bytes:?}"),
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
        // The offset is that of the failing opcode.
        assert_eq!(
            parse(b"NN\xff", 0, false).unwrap_err(),
            Error::At {
                offset: 2,
                problem: PickleProblem::UnknownOpcode(0xff)
            }
        );
    }

    #[test]
    fn raw_unicode_escape_and_quotes() {
        assert_eq!(
            raw_unicode_escape(b"a\\u00e9\\U0001F600\xe9").unwrap(),
            "aé😀é"
        );
        assert_eq!(unquote(b"'a\\x41\\101\\n'").unwrap(), b"aAA\n");
        assert!(unquote(b"'unterminated").is_none());
    }
}
