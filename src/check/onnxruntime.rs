//! onnxruntime as the checks use it ([`Runtime::Onnxruntime`](super::Runtime)): the shared
//! library of an installed onnxruntime, loaded once at run time through the `ort` crate (its
//! `load-dynamic` mode: nothing is linked or downloaded at build time), a model loaded from
//! memory and run many times, its errors turned into [`Error::Onnxruntime`].

use std::path::PathBuf;
use std::sync::Mutex;

use half::f16;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, ValueType};
use prost::Message;
use tract_onnx::prelude::{DatumType, Tensor};

use crate::error::{Error, Param, Result, Role};
use crate::onnx::Model;
use crate::onnx::proto::{GraphProto, ModelProto, ValueInfoProto};

/// The environment variable naming the onnxruntime shared library (as the `ort` crate reads it).
const LIBRARY_VARIABLE: &str = "ORT_DYLIB_PATH";

/// Where the onnxruntime library is: [`LIBRARY_VARIABLE`] when set, else the `capi` folder of
/// the onnxruntime package that `python3` imports (the wheel ships `libonnxruntime.so.1.x.y`
/// there).
fn library() -> std::result::Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(LIBRARY_VARIABLE).filter(|p| !p.is_empty()) {
        // Absolute, so the library loaded is the file checked here (dlopen would search its own
        // paths for a bare name).
        let path = PathBuf::from(path);
        return std::fs::canonicalize(&path)
            .ok()
            .filter(|p| p.is_file())
            .ok_or_else(|| format!("{LIBRARY_VARIABLE} names '{}', which is not a file", path.display()));
    }
    let asked = std::process::Command::new("python3")
        .args(["-c", "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))"])
        .stderr(std::process::Stdio::null())
        .output();
    let capi = match asked {
        Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        _ => return Err(format!("{LIBRARY_VARIABLE} is not set and python3 cannot import onnxruntime (pip install onnxruntime)")),
    };
    let prefix = if cfg!(target_os = "windows") { "onnxruntime" } else { "libonnxruntime." };
    let suffix = if cfg!(target_os = "windows") { ".dll" } else if cfg!(target_os = "macos") { ".dylib" } else { ".so" };
    let mut found: Vec<PathBuf> = std::fs::read_dir(&capi)
        .map_err(|e| format!("cannot list '{}': {e}", capi.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            // not libonnxruntime_providers_shared, which the wheel ships beside it
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.contains(suffix) && !n.contains("providers"))
        })
        .collect();
    found.sort();
    found.pop().ok_or_else(|| format!("no onnxruntime library in '{}' (set {LIBRARY_VARIABLE})", capi.display()))
}

/// Loads the library once per process. A failure is not kept: a later call (after
/// `pip install onnxruntime`, or with `ORT_DYLIB_PATH` set, in a long-lived Python process)
/// tries again.
pub(super) fn init() -> Result<()> {
    static LOADED: Mutex<bool> = Mutex::new(false);
    let mut loaded = LOADED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !*loaded {
        let path = library().map_err(cannot_load)?;
        let builder = ort::init_from(&path).map_err(|e| cannot_load(format!("cannot load '{}': {e}", path.display())))?;
        builder.with_name("onnx-embcomp").commit();
        *loaded = true;
    }
    Ok(())
}

fn cannot_load(reason: String) -> Error {
    Error::InvalidParameter { param: Param::Runtime, reason: format!("onnxruntime: {reason}") }
}

/// A model loaded in onnxruntime, ready to run many times.
pub(crate) struct Runner {
    session: Mutex<Session>,
    /// The names of the outputs returned: the graph's, then the extra tensors asked.
    outputs: Vec<String>,
    /// The inputs the session takes as bf16 (fed as f32 by the checks: converted here).
    bf16_inputs: Vec<String>,
    which: Role,
}

impl Runner {
    /// Loads `model`, with the tensors named in `extra` added as last outputs (onnxruntime
    /// infers their types). `which` names the model in errors.
    pub(crate) fn load(model: &Model, which: Role, extra: &[&str]) -> Result<Runner> {
        init()?;
        let fail = |e: ort::Error| Error::Onnxruntime { which, message: e.to_string() };
        if model.encoded_len() > i32::MAX as usize {
            return Err(Error::Onnxruntime {
                which,
                message: "the model is over protobuf's 2 GiB limit, which onnxruntime cannot load from memory".into(),
            });
        }
        let mut bytes = model.encode();
        if !extra.is_empty() {
            // Protobuf merges concatenated messages: this appends the extra outputs to the graph's
            // without copying the model.
            let output = extra.iter().map(|name| ValueInfoProto { name: Some(name.to_string()), ..Default::default() }).collect();
            let patch = ModelProto { graph: Some(GraphProto { output, ..Default::default() }), ..Default::default() };
            bytes.extend(patch.encode_to_vec());
        }
        let session = Session::builder()
            .map_err(fail)?
            .with_log_level(ort::logging::LogLevel::Fatal)
            .map_err(|e| fail(e.into()))?
            // One thread a model, as tract: a sweep checks several points at once and fits others
            // on the same cores (`pipeline::sweep::schedule`).
            .with_intra_threads(1)
            .map_err(|e| fail(e.into()))?
            .commit_from_memory(&bytes)
            .map_err(fail)?;
        let outputs = model.graph().output.iter().map(|o| o.name().to_string()).chain(extra.iter().map(|s| s.to_string())).collect();
        let bf16_inputs = session
            .inputs()
            .iter()
            .filter(|i| matches!(i.dtype(), ValueType::Tensor { ty: TensorElementType::Bfloat16, .. }))
            .map(|i| i.name().to_string())
            .collect();
        Ok(Runner { session: Mutex::new(session), outputs, bf16_inputs, which })
    }

    /// Runs on `fed`: the outputs in the order of [`Runner::outputs`].
    pub(crate) fn run(&self, fed: &[(String, Tensor)]) -> Result<Vec<Tensor>> {
        let which = self.which;
        let fail = |message: String| Error::Onnxruntime { which, message };
        let inputs = fed
            .iter()
            .map(|(name, t)| {
                let value = if self.bf16_inputs.contains(name) { to_bf16_value(t) } else { to_value(t) };
                Ok((name.as_str(), value.map_err(|e| fail(format!("input '{name}': {e}")))?))
            })
            .collect::<Result<Vec<(&str, SessionInputValue<'static>)>>>()?;
        let mut session = self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = session.run(inputs).map_err(|e| fail(e.to_string()))?;
        self.outputs
            .iter()
            .map(|name| {
                let value = outputs.get(name.as_str()).ok_or_else(|| fail(format!("no output '{name}'")))?;
                from_value(value).map_err(|e| fail(format!("output '{name}': {e}")))
            })
            .collect()
    }
}

/// A tract tensor as an onnxruntime value (the types validation feeds).
fn to_value(t: &Tensor) -> std::result::Result<SessionInputValue<'static>, String> {
    let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
    fn make<T: ort::value::PrimitiveTensorElementType + tract_onnx::prelude::Datum + Clone + std::fmt::Debug + 'static>(
        shape: Vec<i64>,
        t: &Tensor,
    ) -> std::result::Result<SessionInputValue<'static>, String> {
        let data: Vec<T> = t.to_plain_array_view::<T>().map_err(|e| e.to_string())?.iter().cloned().collect();
        ort::value::Tensor::from_array((shape, data)).map(SessionInputValue::from).map_err(|e| e.to_string())
    }
    match t.datum_type() {
        DatumType::I64 => make::<i64>(shape, t),
        DatumType::I32 => make::<i32>(shape, t),
        DatumType::Bool => make::<bool>(shape, t),
        DatumType::F32 => make::<f32>(shape, t),
        DatumType::F16 => make::<f16>(shape, t),
        other => Err(format!("cannot feed a tensor of {other:?}")),
    }
}

/// A float tract tensor as an onnxruntime bf16 value.
fn to_bf16_value(t: &Tensor) -> std::result::Result<SessionInputValue<'static>, String> {
    let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
    let t = t.cast_to::<f32>().map_err(|e| e.to_string())?;
    let data: Vec<half::bf16> = t.to_plain_array_view::<f32>().map_err(|e| e.to_string())?.iter().map(|&v| half::bf16::from_f32(v)).collect();
    ort::value::Tensor::from_array((shape, data)).map(SessionInputValue::from).map_err(|e| e.to_string())
}

/// An onnxruntime output as a tract tensor.
fn from_value(v: &DynValue) -> std::result::Result<Tensor, String> {
    let ValueType::Tensor { ty, .. } = v.dtype() else {
        return Err("not a tensor".into());
    };
    fn take<T: ort::value::PrimitiveTensorElementType + tract_onnx::prelude::Datum + Copy>(v: &DynValue) -> std::result::Result<Tensor, String> {
        let (shape, data) = v.try_extract_tensor::<T>().map_err(|e| e.to_string())?;
        let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        Tensor::from_shape(&shape, data).map_err(|e| e.to_string())
    }
    match ty {
        TensorElementType::Float32 => take::<f32>(v),
        TensorElementType::Float16 => take::<f16>(v),
        // tract has no bf16: as f32, which holds every bf16 value exactly
        TensorElementType::Bfloat16 => {
            let (shape, data) = v.try_extract_tensor::<half::bf16>().map_err(|e| e.to_string())?;
            let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            Tensor::from_shape(&shape, &data.iter().map(|x| x.to_f32()).collect::<Vec<f32>>()).map_err(|e| e.to_string())
        }
        TensorElementType::Float64 => take::<f64>(v),
        TensorElementType::Int64 => take::<i64>(v),
        TensorElementType::Int32 => take::<i32>(v),
        TensorElementType::Int16 => take::<i16>(v),
        TensorElementType::Int8 => take::<i8>(v),
        TensorElementType::Uint64 => take::<u64>(v),
        TensorElementType::Uint32 => take::<u32>(v),
        TensorElementType::Uint16 => take::<u16>(v),
        TensorElementType::Uint8 => take::<u8>(v),
        TensorElementType::Bool => take::<bool>(v),
        other => Err(format!("outputs of type {other:?} are not compared")),
    }
}
