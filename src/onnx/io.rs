//! Bytes <-> `ModelProto`: decoding, external data, lossless encoding and atomic writes.
//!
//! Only this module (and the CLI) touches files.

use std::fs;
use std::io::{Read, Write};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;

use super::proto::{self, ModelProto, TensorProto, tensor_proto::DataLocation};
use crate::error::{Error, Result};

/// The largest message protobuf readers accept (2 GiB - 1).
const PROTOBUF_LIMIT: usize = i32::MAX as usize;

/// A decoded ONNX model whose tensors all hold their data in memory.
///
/// Tensors stored as external data are read in when the model is loaded, so a `Model` does not
/// depend on the folder it came from and can be written anywhere.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The decoded protobuf.
    pub proto: ModelProto,
}

impl Model {
    /// Decodes a model from `bytes`. `dir` is the folder external-data locations are relative
    /// to (`None` refuses external data); `origin` names the model in error messages.
    pub fn decode(bytes: Bytes, dir: Option<&Path>, origin: &Path) -> Result<Model> {
        if bytes.is_empty() {
            return Err(Error::BadModel { path: origin.into(), reason: "the file is empty".into() });
        }
        let proto = ModelProto::decode(bytes)
            .map_err(|source| Error::Decode { path: origin.into(), source })?;
        if proto.graph.is_none() {
            return Err(Error::BadModel {
                path: origin.into(),
                reason: "the protobuf holds no graph, so it is not an ONNX model".into(),
            });
        }
        let mut model = Model { proto };
        model.load_external_data(dir)?;
        Ok(model)
    }

    /// The encoded protobuf.
    pub fn encode(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }

    /// The size of the encoded protobuf in bytes.
    pub fn encoded_len(&self) -> usize {
        self.proto.encoded_len()
    }

    /// The main graph (present in every `Model`: decoding refuses models without one).
    pub fn graph(&self) -> &proto::GraphProto {
        self.proto.graph.as_ref().expect("Model::decode guarantees a graph")
    }

    /// The main graph, mutably.
    pub fn graph_mut(&mut self) -> &mut proto::GraphProto {
        self.proto.graph.as_mut().expect("Model::decode guarantees a graph")
    }

    /// The opset version of the default ONNX domain (`""` or `"ai.onnx"`), if imported.
    pub fn onnx_opset(&self) -> Option<i64> {
        self.proto
            .opset_import
            .iter()
            .find(|o| matches!(o.domain(), "" | "ai.onnx"))
            .map(|o| o.version())
    }

    /// Reads every external-data tensor into `raw_data`, resolving locations against `dir`.
    fn load_external_data(&mut self, dir: Option<&Path>) -> Result<()> {
        let mut files = ExternalFiles { dir, cache: Vec::new() };
        for_each_tensor_mut(&mut self.proto, &mut |t| {
            if t.data_location() == DataLocation::External {
                let data = files.read(t)?;
                t.raw_data = Some(data);
                t.external_data.clear();
                t.data_location = None;
            }
            Ok(())
        })
    }
}

/// External-data files, each read once and sliced per tensor.
struct ExternalFiles<'a> {
    dir: Option<&'a Path>,
    cache: Vec<(PathBuf, Bytes)>,
}

impl ExternalFiles<'_> {
    fn read(&mut self, t: &TensorProto) -> Result<Bytes> {
        let tensor = t.name().to_string();
        let fail = |reason: String| Error::ExternalData { tensor: tensor.clone(), reason };
        let entry = |key: &str| t.external_data.iter().find(|e| e.key() == key).map(|e| e.value());
        let location = entry("location").ok_or_else(|| fail("no 'location' entry".into()))?;
        let parse = |key: &str| -> Result<Option<u64>> {
            entry(key)
                .map(|v| v.parse::<u64>().map_err(|_| fail(format!("'{key}' is not a number: '{v}'"))))
                .transpose()
        };
        let offset = parse("offset")?.unwrap_or(0);
        let length = parse("length")?;
        let dir = self.dir.ok_or_else(|| {
            fail(format!("the model was not read from a file, so '{location}' cannot be resolved"))
        })?;
        let path = resolve_inside(dir, location).map_err(fail)?;
        let data = match self.cache.iter().find(|(p, _)| *p == path) {
            Some((_, data)) => data.clone(),
            None => {
                let data = Bytes::from(fs::read(&path).map_err(|e| {
                    fail(format!("cannot read '{}': {e}", path.display()))
                })?);
                self.cache.push((path.clone(), data.clone()));
                data
            }
        };
        let size = data.len() as u64;
        let end = match length {
            Some(len) => offset.checked_add(len),
            None => Some(size),
        };
        match end {
            Some(end) if offset <= end && end <= size => Ok(data.slice(offset as usize..end as usize)),
            _ => Err(fail(format!(
                "'{}' holds {size} bytes, fewer than offset {offset} + length {} needs",
                path.display(),
                length.map_or("(rest)".into(), |l| l.to_string())
            ))),
        }
    }
}

/// Joins `location` to `dir`, refusing absolute paths and paths that leave `dir`.
fn resolve_inside(dir: &Path, location: &str) -> std::result::Result<PathBuf, String> {
    let rel = Path::new(location);
    if location.is_empty() || rel.is_absolute() || rel.has_root() {
        return Err(format!("location '{location}' must be a relative path inside the model's folder"));
    }
    let base = dir
        .canonicalize()
        .map_err(|e| format!("cannot open the model's folder '{}': {e}", dir.display()))?;
    let path = base.join(rel);
    let real = path
        .canonicalize()
        .map_err(|e| format!("file '{}' named by location '{location}' cannot be opened: {e}", path.display()))?;
    if !real.starts_with(&base) {
        return Err(format!("location '{location}' escapes the model's folder '{}'", base.display()));
    }
    Ok(real)
}

/// Calls `f` on every tensor of the model: initializers, sparse initializers, tensor
/// attributes (Constant nodes included), in subgraphs and functions too.
pub fn for_each_tensor_mut(
    model: &mut ModelProto,
    f: &mut dyn FnMut(&mut TensorProto) -> Result<()>,
) -> Result<()> {
    fn graph(g: &mut proto::GraphProto, f: &mut dyn FnMut(&mut TensorProto) -> Result<()>) -> Result<()> {
        for t in &mut g.initializer {
            f(t)?;
        }
        for s in &mut g.sparse_initializer {
            sparse(s, f)?;
        }
        nodes(&mut g.node, f)
    }
    fn sparse(s: &mut proto::SparseTensorProto, f: &mut dyn FnMut(&mut TensorProto) -> Result<()>) -> Result<()> {
        s.values.as_mut().map_or(Ok(()), &mut *f)?;
        s.indices.as_mut().map_or(Ok(()), &mut *f)
    }
    fn nodes(ns: &mut [proto::NodeProto], f: &mut dyn FnMut(&mut TensorProto) -> Result<()>) -> Result<()> {
        for n in ns {
            for a in &mut n.attribute {
                if let Some(t) = &mut a.t {
                    f(t)?;
                }
                for t in &mut a.tensors {
                    f(t)?;
                }
                if let Some(s) = &mut a.sparse_tensor {
                    sparse(s, f)?;
                }
                for s in &mut a.sparse_tensors {
                    sparse(s, f)?;
                }
                if let Some(g) = &mut a.g {
                    graph(g, f)?;
                }
                for g in &mut a.graphs {
                    graph(g, f)?;
                }
            }
        }
        Ok(())
    }
    if let Some(g) = &mut model.graph {
        graph(g, f)?;
    }
    for func in &mut model.functions {
        nodes(&mut func.node, f)?;
    }
    Ok(())
}

/// Reads and decodes the model at `path`, with its external data.
pub fn read_model(path: &Path) -> Result<Model> {
    let bytes = fs::read(path).map_err(|source| Error::Read { path: path.into(), source })?;
    let dir = path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p });
    Model::decode(Bytes::from(bytes), dir, path)
}

/// Refuses an `output` that is the `input` file itself (also through links or `./`), and an
/// output whose folder does not exist.
pub fn check_output_path(input: &Path, output: &Path) -> Result<()> {
    let write_err = |reason: &str| Error::Write {
        path: output.into(),
        source: std::io::Error::other(reason.to_string()),
    };
    if output.as_os_str().is_empty() || output.file_name().is_none() {
        return Err(write_err("not a file path"));
    }
    if output.is_dir() {
        return Err(write_err("it is a folder; name the output file"));
    }
    let folder = parent_folder(output);
    match fs::metadata(folder) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(write_err(&format!("'{}' is not a folder", folder.display()))),
        Err(_) => return Err(write_err(&format!("folder '{}' does not exist", folder.display()))),
    }
    let same = match (input.canonicalize(), output.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::OutputIsInput { path: output.into() });
    }
    Ok(())
}

fn parent_folder(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Tensors holding at least this many bytes of raw data move to the external-data file when
/// the model is too large for one protobuf.
const EXTERNAL_MIN_BYTES: usize = 1024;

/// What [`write_model`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// Bytes of the model file.
    pub model_bytes: u64,
    /// The external-data file written beside it (`<model file name>.data`) and its size, when
    /// the model was too large for one protobuf.
    pub external_data: Option<(PathBuf, u64)>,
}

/// Writes `model` to `path` atomically: a temporary file in the same folder is written,
/// flushed to disk and renamed over `path`, so no partial file is ever left at `path`.
///
/// A model over protobuf's 2 GiB limit is written with its large tensors (>= 1 KiB of raw
/// data) as external data in `<file name>.data` beside it, written the same way and first.
pub fn write_model(model: &Model, path: &Path) -> Result<Written> {
    write_model_externalising_over(model, path, PROTOBUF_LIMIT)
}

/// [`write_model`] with the size over which tensors go to external data as a parameter, so
/// tests can force it on small models.
#[doc(hidden)]
pub fn write_model_externalising_over(model: &Model, path: &Path, limit: usize) -> Result<Written> {
    if model.encoded_len() <= limit {
        let bytes = model.encode();
        write_atomically(path, &bytes)?;
        return Ok(Written { model_bytes: bytes.len() as u64, external_data: None });
    }
    let write_err = |reason: String| Error::Write { path: path.into(), source: std::io::Error::other(reason) };
    let location = match path.file_name().and_then(|n| n.to_str()) {
        Some(name) => format!("{name}.data"),
        None => return Err(write_err("external data needs an output file name in UTF-8".into())),
    };
    let mut proto = model.proto.clone(); // tensor data is shared, not copied
    let mut parts: Vec<Bytes> = Vec::new();
    let mut offset = 0u64;
    for_each_tensor_mut(&mut proto, &mut |t| {
        if let Some(raw) = t.raw_data.take_if(|r| r.len() >= EXTERNAL_MIN_BYTES) {
            let entry = |key: &str, value: String| proto::StringStringEntryProto { key: Some(key.into()), value: Some(value) };
            t.data_location = Some(DataLocation::External as i32);
            t.external_data = vec![
                entry("location", location.clone()),
                entry("offset", offset.to_string()),
                entry("length", raw.len().to_string()),
            ];
            offset += raw.len() as u64;
            parts.push(raw);
        }
        Ok(())
    })?;
    let len = proto.encoded_len();
    if len > PROTOBUF_LIMIT {
        return Err(write_err(format!(
            "the model would be {len} bytes even with its large tensors as external data, over protobuf's 2 GiB limit"
        )));
    }
    let data_path = path.with_file_name(&location);
    let parts: Vec<&[u8]> = parts.iter().map(|b| b.as_ref()).collect();
    write_parts_atomically(&data_path, &parts)?;
    write_atomically(path, &proto.encode_to_vec())?;
    Ok(Written { model_bytes: len as u64, external_data: Some((data_path, offset)) })
}

/// Temporary files being written, for [`abandon_writes`].
static IN_PROGRESS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn in_progress() -> MutexGuard<'static, Vec<PathBuf>> {
    IN_PROGRESS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes the temporary files of the writes in progress and holds back every rename into
/// place while the returned guard lives: for an interrupt handler, which then exits. So an
/// interrupted run leaves each output either complete or absent, and no temporary file.
pub fn abandon_writes() -> MutexGuard<'static, Vec<PathBuf>> {
    let mut list = in_progress();
    for path in list.drain(..) {
        let _ = fs::remove_file(path);
    }
    list
}

/// Takes a temporary file off the in-progress list when its write ends, however it ends.
struct InProgress(PathBuf);

impl Drop for InProgress {
    fn drop(&mut self) {
        in_progress().retain(|p| *p != self.0);
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename. The
/// temporary file is read back and compared before it replaces `path`; on any failure it is
/// removed and `path` is untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_parts_atomically(path, &[bytes])
}

/// [`write_atomically`] of the concatenation of `parts`.
fn write_parts_atomically(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let err = |source| Error::Write { path: path.into(), source };
    let (mut tmp, _in_progress) = {
        let mut list = in_progress();
        let tmp = tempfile::Builder::new()
            .prefix(".onnx-embcomp-")
            .suffix(".tmp")
            .tempfile_in(parent_folder(path))
            .map_err(err)?;
        list.push(tmp.path().to_path_buf());
        let registered = InProgress(tmp.path().to_path_buf());
        (tmp, registered)
    };
    for part in parts {
        tmp.write_all(part).map_err(err)?;
    }
    tmp.as_file().sync_all().map_err(err)?;
    if !reads_back_as(tmp.path(), parts).map_err(err)? {
        return Err(err(std::io::Error::other("the bytes read back differ from the bytes written")));
    }
    let _no_abandon = in_progress();
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// Whether the file at `path` holds exactly the concatenation of `parts` (read in chunks).
fn reads_back_as(path: &Path, parts: &[&[u8]]) -> std::io::Result<bool> {
    const CHUNK: usize = 1 << 20;
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; CHUNK];
    for chunk in parts.iter().flat_map(|p| p.chunks(CHUNK)) {
        let got = &mut buf[..chunk.len()];
        match file.read_exact(got) {
            Ok(()) if got == chunk => {}
            Ok(()) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(file.read(&mut buf[..1])? == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{GraphProto, StringStringEntryProto};
    use crate::onnx::tensor::{FloatType, float_matrix, float_tensor};

    fn entry(key: &str, value: &str) -> StringStringEntryProto {
        StringStringEntryProto { key: Some(key.into()), value: Some(value.into()) }
    }

    /// A model whose only initializer `w` [2, 2] lives at `location` (offset 8, length 16).
    fn external_model(location: &str) -> ModelProto {
        let mut t = float_tensor("w", &[2, 2], &[0.0; 4], FloatType::F32);
        t.raw_data = None;
        t.data_location = Some(DataLocation::External as i32);
        t.external_data = vec![entry("location", location), entry("offset", "8"), entry("length", "16")];
        ModelProto {
            ir_version: Some(8),
            graph: Some(GraphProto { name: Some("g".into()), initializer: vec![t], ..Default::default() }),
            ..Default::default()
        }
    }

    fn data_file(dir: &Path, name: &str) {
        let mut bytes = vec![0u8; 8];
        for v in [1.0f32, 2.0, 3.0, 4.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        fs::write(dir.join(name), bytes).unwrap();
    }

    fn load(dir: &Path, proto: &ModelProto) -> Result<Model> {
        let path = dir.join("model.onnx");
        fs::write(&path, proto.encode_to_vec()).unwrap();
        read_model(&path)
    }

    #[test]
    fn external_data_is_read_relative_to_the_model() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        data_file(&dir.path().join("sub"), "w.bin");
        let m = load(dir.path(), &external_model("sub/w.bin")).unwrap();
        let t = &m.graph().initializer[0];
        assert_eq!(t.data_location(), DataLocation::Default);
        assert!(t.external_data.is_empty());
        assert_eq!(float_matrix(t).unwrap().into_raw_vec_and_offset().0, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn external_location_escaping_the_folder_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("model");
        fs::create_dir(&dir).unwrap();
        data_file(root.path(), "escape.bin");
        let e = load(&dir, &external_model("../escape.bin")).unwrap_err().to_string();
        assert!(e.contains("tensor 'w'") && e.contains("escapes the model's folder"), "{e}");
        let e = load(&dir, &external_model("/etc/passwd")).unwrap_err().to_string();
        assert!(e.contains("must be a relative path"), "{e}");
    }

    #[test]
    fn missing_or_short_external_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path(), &external_model("absent.bin")).unwrap_err().to_string();
        assert!(e.contains("tensor 'w'") && e.contains("absent.bin") && e.contains("cannot be opened"), "{e}");
        fs::write(dir.path().join("short.bin"), [0u8; 12]).unwrap();
        let e = load(dir.path(), &external_model("short.bin")).unwrap_err().to_string();
        assert!(e.contains("holds 12 bytes, fewer than offset 8 + length 16"), "{e}");
    }

    #[test]
    fn round_trip_is_lossless_and_byte_identical() {
        let mut proto = external_model("x");
        let t = &mut proto.graph.as_mut().unwrap().initializer[0];
        *t = float_tensor("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0], FloatType::F16);
        proto.doc_string = Some("kept".into());
        proto.metadata_props = vec![entry("author", "me")];
        let bytes = proto.encode_to_vec();
        let m = Model::decode(Bytes::from(bytes.clone()), None, Path::new("mem")).unwrap();
        assert_eq!(m.proto, proto);
        assert_eq!(m.encode(), bytes);
    }

    #[test]
    fn empty_garbage_and_graphless_inputs_are_refused() {
        let origin = Path::new("m.onnx");
        let e = Model::decode(Bytes::new(), None, origin).unwrap_err().to_string();
        assert!(e.contains("'m.onnx'") && e.contains("empty"), "{e}");
        let e = Model::decode(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]), None, origin).unwrap_err().to_string();
        assert!(e.contains("not a valid ONNX model"), "{e}");
        let no_graph = ModelProto { ir_version: Some(8), ..Default::default() }.encode_to_vec();
        let e = Model::decode(Bytes::from(no_graph), None, origin).unwrap_err().to_string();
        assert!(e.contains("holds no graph"), "{e}");
    }

    #[test]
    fn output_path_checks() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.onnx");
        fs::write(&input, b"x").unwrap();
        let e = check_output_path(&input, &input).unwrap_err().to_string();
        assert!(e.contains("it is the input model itself"), "{e}");
        let dotted = dir.path().join(".").join("in.onnx");
        assert!(check_output_path(&input, &dotted).is_err());
        #[cfg(unix)]
        {
            let link = dir.path().join("link.onnx");
            std::os::unix::fs::symlink(&input, &link).unwrap();
            assert!(check_output_path(&input, &link).is_err());
        }
        let e = check_output_path(&input, dir.path()).unwrap_err().to_string();
        assert!(e.contains("it is a folder"), "{e}");
        let e = check_output_path(&input, &dir.path().join("missing/out.onnx")).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(check_output_path(&input, &dir.path().join("out.onnx")).is_ok());
    }

    #[test]
    fn declared_external_sizes_beyond_the_file_fail_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        data_file(dir.path(), "w.bin"); // 24 bytes
        let with = |offset: &str, length: &str| {
            let mut proto = external_model("w.bin");
            let t = &mut proto.graph.as_mut().unwrap().initializer[0];
            t.external_data = vec![entry("location", "w.bin"), entry("offset", offset), entry("length", length)];
            load(dir.path(), &proto).unwrap_err().to_string()
        };
        let e = with("8", &(1u64 << 40).to_string());
        assert!(e.contains("tensor 'w'") && e.contains("holds 24 bytes, fewer than offset 8 + length 1099511627776"), "{e}");
        let e = with(&u64::MAX.to_string(), "16"); // offset + length overflows
        assert!(e.contains("holds 24 bytes, fewer than offset 18446744073709551615"), "{e}");
        let e = with("-1", "16");
        assert!(e.contains("'offset' is not a number: '-1'"), "{e}");
    }

    #[test]
    fn failed_write_leaves_no_temporary_and_no_output() {
        let dir = tempfile::tempdir().unwrap();
        // The rename fails: the target is a folder that is not empty.
        let target = dir.path().join("taken");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"x").unwrap();
        let e = write_atomically(&target, b"contents").unwrap_err().to_string();
        assert!(e.contains("cannot write") && e.contains("taken"), "{e}");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["taken"], "a temporary file was left behind");
        assert!(in_progress().iter().all(|p| !p.starts_with(dir.path())), "still listed as in progress");
        // The temporary file cannot even be created: nothing appears either.
        let e = write_atomically(&dir.path().join("missing/out.bin"), b"x").unwrap_err().to_string();
        assert!(e.contains("missing/out.bin"), "{e}");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        fs::write(&path, b"old").unwrap();
        write_atomically(&path, b"new contents").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new contents");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
