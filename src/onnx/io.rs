//! Bytes <-> `ModelProto`: decoding, external data, lossless encoding, and the layout of a
//! written model (inline or with external data). The writes themselves go through
//! [`crate::files`]; only these two modules (and the CLI) touch files.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;

use super::proto::{self, ModelProto, TensorProto, tensor_proto::DataLocation};
use crate::error::{Error, Result};
use crate::files::{commit, parent_folder, stage, write_atomically};

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
        Model::decode_with_files(bytes, dir, origin).map(|(model, _)| model)
    }

    /// [`Model::decode`], also returning the external-data files read (canonical paths, each
    /// once, in order of first reference) with their sizes in bytes.
    fn decode_with_files(bytes: Bytes, dir: Option<&Path>, origin: &Path) -> Result<(Model, Vec<(PathBuf, u64)>)> {
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
        let files = model.load_external_data(dir)?;
        Ok((model, files))
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

    /// Reads every external-data tensor into `raw_data`, resolving locations against `dir`;
    /// returns the files read and their sizes.
    fn load_external_data(&mut self, dir: Option<&Path>) -> Result<Vec<(PathBuf, u64)>> {
        let mut files = ExternalFiles { dir, cache: Vec::new() };
        for_each_tensor_mut(&mut self.proto, &mut |t| {
            if t.data_location() == DataLocation::External {
                let data = files.read(t)?;
                t.raw_data = Some(data);
                t.external_data.clear();
                t.data_location = None;
            }
            Ok(())
        })?;
        Ok(files.cache.into_iter().map(|(path, data)| (path, data.len() as u64)).collect())
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
    read_model_stored(path).map(|(model, _)| model)
}

/// How a model read by [`read_model_stored`] was stored on disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputFiles {
    /// Bytes of the model file itself.
    pub model_bytes: u64,
    /// Bytes on disk in all: the model file plus every distinct external-data file its tensors
    /// reference, each counted once and whole.
    pub file_bytes: u64,
    /// The external-data files its tensors reference (canonical paths), each once, in order of
    /// first reference; empty for a self-contained model.
    pub external_files: Vec<PathBuf>,
}

impl InputFiles {
    /// Whether any tensor was stored as external data.
    pub fn has_external_data(&self) -> bool {
        !self.external_files.is_empty()
    }

    /// Refuses an `output` that is one of the input's external-data files, or whose own
    /// external-data file (`<output>.data`, unless `options` keep it inline) would be: writing
    /// it would replace data the input model needs.
    pub fn check_output(&self, output: &Path, options: &WriteOptions) -> Result<()> {
        let is_input_data = |p: &Path| p.canonicalize().is_ok_and(|real| self.external_files.contains(&real));
        let refuse = |reason: String| Err(Error::Write { path: output.into(), source: std::io::Error::other(reason) });
        if is_input_data(output) {
            return refuse("it holds external data of the input model".into());
        }
        if options.external_data != ExternalData::Never
            && let Some(data) = external_data_path(output)
            && is_input_data(&data)
        {
            return refuse(format!(
                "its external data would replace '{}', which holds external data of the input model; \
                 choose another output name",
                data.display()
            ));
        }
        Ok(())
    }

    /// [`InputFiles::check_output`] for a file beside the model that is not a model (a report, a
    /// plot): refused when it is one of the input's external-data files.
    pub fn check_side_output(&self, path: &Path) -> Result<()> {
        self.check_output(path, &WriteOptions { external_data: ExternalData::Never })
    }
}

/// Reads and decodes the model at `path`, with its external data, and says how it was stored.
pub fn read_model_stored(path: &Path) -> Result<(Model, InputFiles)> {
    let bytes = fs::read(path).map_err(|source| Error::Read { path: path.into(), source })?;
    let model_bytes = bytes.len() as u64;
    let (model, files) = Model::decode_with_files(Bytes::from(bytes), Some(parent_folder(path)), path)?;
    // A location naming the model file itself is not another file.
    let itself = path.canonicalize().ok();
    let files: Vec<(PathBuf, u64)> = files.into_iter().filter(|(p, _)| Some(p) != itself.as_ref()).collect();
    let file_bytes = model_bytes + files.iter().map(|(_, bytes)| bytes).sum::<u64>();
    let external_files = files.into_iter().map(|(p, _)| p).collect();
    Ok((model, InputFiles { model_bytes, file_bytes, external_files }))
}

/// Tensors holding at least this many bytes of raw data move to the external-data file when
/// the model is written with external data.
const EXTERNAL_MIN_BYTES: usize = 1024;

/// Where [`write_model_with`] puts the tensors holding at least 1 KiB of raw data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExternalData {
    /// Inline, unless the model is over protobuf's 2 GiB limit: then as external data (what
    /// [`write_model`] does).
    #[default]
    IfTooLarge,
    /// As external data in `<file name>.data` beside the model file, whatever its size (inline
    /// only when no tensor is that large).
    Always,
    /// Inline: one self-contained file; a model over 2 GiB is an error.
    Never,
}

impl ExternalData {
    /// The layout of the input read as `stored`: [`Always`](Self::Always) when it had external
    /// data, else [`IfTooLarge`](Self::IfTooLarge). (`--external-data auto`.)
    pub fn like(stored: &InputFiles) -> ExternalData {
        if stored.has_external_data() { ExternalData::Always } else { ExternalData::IfTooLarge }
    }
}

/// How [`write_model_with`] writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Where the large tensors go.
    pub external_data: ExternalData,
}

/// What [`write_model`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// Bytes of the model file.
    pub model_bytes: u64,
    /// The external-data file written beside it (`<model file name>.data`) and its size, when
    /// the large tensors went to external data.
    pub external_data: Option<(PathBuf, u64)>,
    /// Whether they went there because the model is over protobuf's 2 GiB limit (rather than
    /// because [`ExternalData::Always`] asked for it).
    pub over_limit: bool,
}

impl Written {
    /// Bytes written in all: the model file plus its external-data file.
    pub fn file_bytes(&self) -> u64 {
        self.model_bytes + self.external_data.as_ref().map_or(0, |(_, bytes)| *bytes)
    }

    /// One line saying where everything went, for the model file written at `path`.
    pub fn summary(&self, path: &Path) -> String {
        match &self.external_data {
            None => format!("wrote {} ({} bytes, all tensors inline)", path.display(), self.model_bytes),
            Some((data, bytes)) => format!(
                "wrote {} ({} bytes) and{} its large tensors as external data in {} ({bytes} bytes)",
                path.display(),
                self.model_bytes,
                if self.over_limit { ", as it is over protobuf's 2 GiB limit," } else { "" },
                data.display()
            ),
        }
    }
}

/// The external-data file of the model file `path`: `<file name>.data` beside it (`None`
/// when the file name is not UTF-8).
fn external_data_path(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    Some(path.with_file_name(format!("{name}.data")))
}

/// Writes `model` to `path` atomically: a temporary file in the same folder is written,
/// flushed to disk and renamed over `path`, so no partial file is ever left at `path`.
///
/// A model over protobuf's 2 GiB limit is written with its large tensors (>= 1 KiB of raw
/// data) as external data in `<file name>.data` beside it, written the same way and first.
pub fn write_model(model: &Model, path: &Path) -> Result<Written> {
    write_model_with(model, path, &WriteOptions::default())
}

/// [`write_model`] with the large tensors (>= 1 KiB of raw data) inline or as external data in
/// `<file name>.data` beside `path`, as `options` say. With external data, both files are
/// written to temporary files and checked first; then the data file is renamed into place,
/// then the model file. A failure before the renames leaves both paths untouched.
///
/// A file written is given the mode a plain write would give a new file (`0666 & !umask`),
/// or keeps the permission bits of the file it replaces.
pub fn write_model_with(model: &Model, path: &Path, options: &WriteOptions) -> Result<Written> {
    write_with(model, path, options.external_data, PROTOBUF_LIMIT)
}

/// [`write_model`] with the size over which tensors go to external data as a parameter, so
/// tests can force it on small models.
#[doc(hidden)]
pub fn write_model_externalising_over(model: &Model, path: &Path, limit: usize) -> Result<Written> {
    write_with(model, path, ExternalData::IfTooLarge, limit)
}

/// [`write_model_with`], with `limit` standing for protobuf's limit in the choice of layout.
fn write_with(model: &Model, path: &Path, external: ExternalData, limit: usize) -> Result<Written> {
    let write_err = |reason: String| Error::Write { path: path.into(), source: std::io::Error::other(reason) };
    let inline = |bytes: &[u8]| -> Result<Written> {
        write_atomically(path, bytes)?;
        Ok(Written { model_bytes: bytes.len() as u64, external_data: None, over_limit: false })
    };
    let len = model.encoded_len();
    let over_limit = len > limit;
    match external {
        ExternalData::IfTooLarge if !over_limit => return inline(&model.encode()),
        ExternalData::Never if over_limit => {
            return Err(write_err(format!(
                "the model is {len} bytes, over protobuf's 2 GiB limit, so it cannot be one file, and \
                 external data was refused"
            )));
        }
        ExternalData::Never => return inline(&model.encode()),
        ExternalData::IfTooLarge | ExternalData::Always => {}
    }
    let Some(data_path) = external_data_path(path) else {
        return Err(write_err("external data needs an output file name in UTF-8".into()));
    };
    let location = data_path.file_name().and_then(|n| n.to_str()).expect("made from a UTF-8 name").to_string();
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
    if parts.is_empty() {
        return inline(&model.encode()); // no tensor is large enough to move
    }
    let parts: Vec<&[u8]> = parts.iter().map(|b| b.as_ref()).collect();
    let data = stage(&data_path, &parts)?;
    let model_file = stage(path, &[&proto.encode_to_vec()])?;
    commit(vec![data, model_file])?;
    Ok(Written { model_bytes: len as u64, external_data: Some((data_path, offset)), over_limit })
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

    /// A model with two tensors of 1 KiB (`big0`, `big1`) and a small one (`small`).
    fn two_big_tensors() -> Model {
        let big = |name: &str, v: f32| float_tensor(name, &[16, 16], &[v; 256], FloatType::F32);
        let graph = GraphProto {
            name: Some("g".into()),
            initializer: vec![
                big("big0", 1.0),
                float_tensor("small", &[2], &[5.0, 6.0], FloatType::F32),
                big("big1", 2.0),
            ],
            ..Default::default()
        };
        Model { proto: ModelProto { ir_version: Some(8), graph: Some(graph), ..Default::default() } }
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn stored_counts_the_model_file_and_each_external_file_once() {
        let dir = tempfile::tempdir().unwrap();
        // two tensors in a.bin, one in b.bin
        let mut proto = two_big_tensors().proto;
        let g = proto.graph.as_mut().unwrap();
        g.initializer.push(float_tensor("big2", &[16, 16], &[3.0; 256], FloatType::F32));
        let mut files: Vec<(String, Vec<u8>)> = vec![("a.bin".into(), Vec::new()), ("b.bin".into(), Vec::new())];
        for (t, file) in g.initializer.iter_mut().filter(|t| t.name().starts_with("big")).zip([0, 1, 0]) {
            let raw = t.raw_data.take().unwrap();
            let (name, bytes) = &mut files[file];
            t.data_location = Some(DataLocation::External as i32);
            let (offset, length) = (bytes.len().to_string(), raw.len().to_string());
            t.external_data = vec![entry("location", name), entry("offset", &offset), entry("length", &length)];
            bytes.extend_from_slice(&raw);
        }
        files[1].1.extend_from_slice(&[0; 100]); // bytes no tensor uses count too: the file is on disk
        for (name, bytes) in &files {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        let path = dir.path().join("model.onnx");
        fs::write(&path, proto.encode_to_vec()).unwrap();
        let (model, stored) = read_model_stored(&path).unwrap();
        let size = |name: &str| fs::metadata(dir.path().join(name)).unwrap().len();
        assert_eq!(stored.model_bytes, size("model.onnx"));
        assert_eq!(stored.file_bytes, size("model.onnx") + size("a.bin") + size("b.bin"));
        let canonical = |name: &str| dir.path().join(name).canonicalize().unwrap();
        assert_eq!(stored.external_files, [canonical("a.bin"), canonical("b.bin")]);
        assert!(stored.has_external_data());
        assert_eq!(ExternalData::like(&stored), ExternalData::Always);
        assert_eq!(model.graph().initializer.len(), 4);

        let inline = dir.path().join("inline.onnx");
        fs::write(&inline, two_big_tensors().encode()).unwrap();
        let (_, stored) = read_model_stored(&inline).unwrap();
        let bytes = size("inline.onnx");
        assert_eq!(stored, InputFiles { model_bytes: bytes, file_bytes: bytes, external_files: vec![] });
        assert_eq!(ExternalData::like(&stored), ExternalData::IfTooLarge);
    }

    #[test]
    fn layouts_inline_external_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let model = two_big_tensors();
        let path = dir.path().join("m.onnx");
        let with = |external_data| write_model_with(&model, &path, &WriteOptions { external_data });
        // inline: one file
        let w = with(ExternalData::IfTooLarge).unwrap();
        assert_eq!((w.external_data.as_ref(), w.over_limit), (None, false));
        assert_eq!(names_in(dir.path()), ["m.onnx"]);
        assert_eq!(w.summary(&path), format!("wrote {} ({} bytes, all tensors inline)", path.display(), w.model_bytes));
        // always: the two big tensors in m.onnx.data, the small one inline
        let w = with(ExternalData::Always).unwrap();
        let data = dir.path().join("m.onnx.data");
        assert_eq!((w.external_data.clone(), w.over_limit), (Some((data.clone(), 2048)), false));
        assert_eq!(w.file_bytes(), fs::metadata(&path).unwrap().len() + 2048);
        assert_eq!(names_in(dir.path()), ["m.onnx", "m.onnx.data"]);
        let said = format!("and its large tensors as external data in {} (2048 bytes)", data.display());
        assert!(w.summary(&path).ends_with(&said), "{}", w.summary(&path));
        let stored = ModelProto::decode(Bytes::from(fs::read(&path).unwrap())).unwrap();
        let initializers = &stored.graph.as_ref().unwrap().initializer;
        let external: Vec<&str> =
            initializers.iter().filter(|t| t.data_location() == DataLocation::External).map(|t| t.name()).collect();
        assert_eq!(external, ["big0", "big1"]);
        let (back, stored) = read_model_stored(&path).unwrap();
        assert_eq!(back, model);
        assert_eq!(stored.file_bytes, w.file_bytes());
        // over the limit: external, and said so; never refuses, saying why
        let w = write_with(&model, &path, ExternalData::IfTooLarge, 100).unwrap();
        assert!(w.over_limit && w.summary(&path).contains("as it is over protobuf's 2 GiB limit"));
        let e = write_with(&model, &dir.path().join("n.onnx"), ExternalData::Never, 100).unwrap_err().to_string();
        assert!(e.contains("n.onnx") && e.contains("over protobuf's 2 GiB limit"), "{e}");
        assert!(e.contains("external data was refused"), "{e}");
        assert_eq!(names_in(dir.path()), ["m.onnx", "m.onnx.data"], "nothing written for the refusal");
        // always, but no tensor is large enough: inline, no empty data file
        let mut small = model.clone();
        small.graph_mut().initializer.retain(|t| t.name() == "small");
        let options = WriteOptions { external_data: ExternalData::Always };
        let w = write_model_with(&small, &dir.path().join("s.onnx"), &options).unwrap();
        assert_eq!(w.external_data, None);
        assert!(!dir.path().join("s.onnx.data").exists());
    }

    #[test]
    fn an_output_replacing_the_inputs_external_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        data_file(dir.path(), "in.onnx.data");
        let data = dir.path().join("in.onnx.data").canonicalize().unwrap();
        let stored = InputFiles { external_files: vec![data], ..Default::default() };
        let check = |name: &str, external_data| stored.check_output(&dir.path().join(name), &WriteOptions { external_data });
        let e = check("in.onnx.data", ExternalData::Never).unwrap_err().to_string();
        assert!(e.contains("holds external data of the input model"), "{e}");
        let e = check("in.onnx", ExternalData::Always).unwrap_err().to_string();
        assert!(e.contains("would replace") && e.contains("in.onnx.data"), "{e}");
        assert!(check("in.onnx", ExternalData::Never).is_ok());
        assert!(check("out.onnx", ExternalData::Always).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn the_external_data_file_replaced_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        fs::write(&plain, b"x").unwrap();
        // the external-data file too
        let model = dir.path().join("m.onnx");
        fs::write(dir.path().join("m.onnx.data"), b"old").unwrap();
        fs::set_permissions(dir.path().join("m.onnx.data"), fs::Permissions::from_mode(0o640)).unwrap();
        write_model_with(&two_big_tensors(), &model, &WriteOptions { external_data: ExternalData::Always }).unwrap();
        assert_eq!((mode(&model), mode(&dir.path().join("m.onnx.data"))), (mode(&plain), 0o640));
    }

}
