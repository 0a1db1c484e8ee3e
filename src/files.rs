//! General file safety, for any file the tool writes: an output path checked before the work
//! (not the input, a folder that takes files), writes staged beside their destination, read
//! back and renamed into place, and the registry of writes in progress that an interrupt
//! handler abandons, so an output is complete or absent.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};

/// Refuses an `output` that is the `input` file itself (also through links or `./`), and an
/// output whose folder does not exist or takes no new file.
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
    // A folder that takes no new file fails now, before the costly work, with the error the
    // write would give.
    probe_folder(folder).map_err(|source| Error::Write { path: output.into(), source })
}

/// Creates and removes a file in `folder`. The probe is registered like a write's temporary
/// file, so an interrupt meanwhile removes it too, and named `.onnx-embcomp-*.probe`, apart
/// from the writes' `.tmp` files.
fn probe_folder(folder: &Path) -> std::io::Result<()> {
    let _registered;
    let _probe = {
        let mut list = in_progress();
        let probe = tempfile::Builder::new().prefix(".onnx-embcomp-").suffix(".probe").tempfile_in(folder)?;
        list.push(probe.path().to_path_buf());
        _registered = InProgress(probe.path().to_path_buf());
        probe
    };
    // Dropped in reverse order: the probe is removed, then taken off the list.
    Ok(())
}

pub(crate) fn parent_folder(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
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
///
/// A new file gets the mode a plain write gives (`0666 & !umask`, as `cp` does); a file
/// replaced keeps its permission bits.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_parts_atomically(path, &[bytes])
}

/// [`write_atomically`] of the concatenation of `parts`.
pub(crate) fn write_parts_atomically(path: &Path, parts: &[&[u8]]) -> Result<()> {
    commit(vec![stage(path, parts)?])
}

/// A file written and checked under a temporary name beside its destination, not yet renamed
/// into place. Dropping it removes the temporary file.
pub(crate) struct Staged {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
    in_progress: InProgress,
}

/// Writes the concatenation of `parts` to a temporary file beside `path`, flushes it to disk
/// and reads it back; gives it the mode `path` will have (see [`write_atomically`]).
pub(crate) fn stage(path: &Path, parts: &[&[u8]]) -> Result<Staged> {
    let err = |source| Error::Write { path: path.into(), source };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".onnx-embcomp-").suffix(".tmp");
    // The mode is given to open(2), which applies the umask (or a folder's default ACL) as a
    // plain write does: the process umask is not changed, and the file is never more open
    // than its final mode.
    #[cfg(unix)]
    let existing = {
        use std::os::unix::fs::PermissionsExt;
        let existing = fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| m.permissions().mode() & 0o777);
        builder.permissions(fs::Permissions::from_mode(existing.unwrap_or(0o666)));
        existing
    };
    let (mut tmp, in_progress) = {
        let mut list = in_progress();
        let tmp = builder.tempfile_in(parent_folder(path)).map_err(err)?;
        list.push(tmp.path().to_path_buf());
        let registered = InProgress(tmp.path().to_path_buf());
        (tmp, registered)
    };
    // Replacing a file: its exact mode, whatever the umask (fchmod on the open file).
    #[cfg(unix)]
    if let Some(mode) = existing {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(fs::Permissions::from_mode(mode)).map_err(err)?;
    }
    for part in parts {
        tmp.write_all(part).map_err(err)?;
    }
    tmp.as_file().sync_all().map_err(err)?;
    if !reads_back_as(tmp.path(), parts).map_err(err)? {
        return Err(err(std::io::Error::other("the bytes read back differ from the bytes written")));
    }
    Ok(Staged { tmp, path: path.into(), in_progress })
}

/// Renames the staged files into place, in order, holding back interrupts until all are (so an
/// interrupt cannot come between an external-data file and its model file). Stops at the
/// first failure; the temporary files not renamed are removed.
pub(crate) fn commit(staged: Vec<Staged>) -> Result<()> {
    let mut registered = Vec::with_capacity(staged.len());
    let mut files = Vec::with_capacity(staged.len());
    for s in staged {
        registered.push(s.in_progress);
        files.push((s.tmp, s.path));
    }
    let no_abandon = in_progress();
    let result = files
        .into_iter()
        .try_for_each(|(tmp, path)| tmp.persist(&path).map(drop).map_err(|e| Error::Write { path, source: e.error }));
    drop(no_abandon);
    drop(registered); // takes the lock again
    result
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

    #[cfg(unix)]
    #[test]
    fn new_files_get_a_plain_writes_mode_and_replaced_files_keep_theirs() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let dir = tempfile::tempdir().unwrap();
        // whatever this process's umask (and the folder's default ACL) is; the CLI tests set
        // known umasks in a child process
        let plain = dir.path().join("plain");
        fs::write(&plain, b"x").unwrap();
        let new = dir.path().join("new.bin");
        write_atomically(&new, b"new").unwrap();
        assert_eq!(mode(&new), mode(&plain));
        for kept in [0o600, 0o640, 0o604, 0o755] {
            let path = dir.path().join(format!("kept{kept:o}"));
            fs::write(&path, b"old").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(kept)).unwrap();
            write_atomically(&path, b"replaced").unwrap();
            assert_eq!((mode(&path), fs::read(&path).unwrap()), (kept, b"replaced".to_vec()));
        }
    }
}
