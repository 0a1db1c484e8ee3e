//! Which runtime runs the checks: tract (built in), or onnxruntime (loaded at run time from the
//! library its Python wheel ships, for models tract cannot run). Both are driven the same way: a
//! model loaded for the shapes of the inputs fed, then run many times.

use serde::Serialize;
use tract_onnx::prelude::{IntoTensor, TValue, Tensor};

use crate::error::{Result, Role};
use crate::onnx::Model;

/// The runtime that runs the original and the rewritten models for the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Runtime {
    /// tract, compiled in: needs nothing installed.
    #[default]
    Tract,
    /// onnxruntime through the `libonnxruntime` shared library of an installed onnxruntime
    /// (`ORT_DYLIB_PATH`, else the onnxruntime package of `python3`): runs the contrib
    /// operators tract lacks (e.g. 4-bit `GatherBlockQuantized`). Needs the crate's
    /// `onnxruntime` feature (on by default).
    Onnxruntime,
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Runtime::Tract => "tract",
            Runtime::Onnxruntime => "onnxruntime",
        })
    }
}

thread_local! {
    /// Loads of an original model on this thread, for tests that count them.
    static ORIGINAL_LOADS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many times an original model was loaded (in either runtime) on this thread so far: the
/// pipeline runs the original once per prepared model, however many candidates it then checks.
#[doc(hidden)]
pub fn original_loads() -> usize {
    ORIGINAL_LOADS.with(|c| c.get())
}

/// Checks that `runtime` can run here: for onnxruntime, that this build has it and that its
/// library loads (once a process, [`super::onnxruntime`]).
pub(crate) fn check_available(runtime: Runtime) -> Result<()> {
    match runtime {
        Runtime::Tract => Ok(()),
        #[cfg(feature = "onnxruntime")]
        Runtime::Onnxruntime => super::onnxruntime::init(),
        #[cfg(not(feature = "onnxruntime"))]
        Runtime::Onnxruntime => Err(without_onnxruntime()),
    }
}

/// The error for onnxruntime in a build without it.
#[cfg(not(feature = "onnxruntime"))]
fn without_onnxruntime() -> crate::error::Error {
    crate::error::Error::InvalidParameter {
        param: crate::error::Param::Runtime,
        reason: "onnxruntime: this build has no onnxruntime support (the crate's `onnxruntime` feature)".into(),
    }
}

/// A model loaded in one of the runtimes for the input shapes it was fed at load (onnxruntime,
/// and tract with [`Runner::load_any_length`]: any sequence length), ready to run many times.
pub(crate) enum Runner {
    Tract(super::tract::Runner),
    #[cfg(feature = "onnxruntime")]
    Onnxruntime(super::onnxruntime::Runner),
}

impl Runner {
    /// Loads `model` in `runtime` for inputs like `fed` (tract pins their shapes and types);
    /// `extra` (tensor names) are added as last outputs. `which` names the model in errors.
    pub(crate) fn load(runtime: Runtime, model: &Model, which: Role, fed: &[(String, Tensor)], extra: &[&str]) -> Result<Runner> {
        if which == Role::Original {
            ORIGINAL_LOADS.with(|c| c.set(c.get() + 1));
        }
        match runtime {
            Runtime::Tract => super::tract::Runner::load(model, which, fed, extra).map(Runner::Tract),
            #[cfg(feature = "onnxruntime")]
            Runtime::Onnxruntime => super::onnxruntime::Runner::load(model, which, extra).map(Runner::Onnxruntime),
            #[cfg(not(feature = "onnxruntime"))]
            Runtime::Onnxruntime => Err(without_onnxruntime()),
        }
    }

    /// [`Runner::load`] for inputs like `fed` at any sequence length: each input fed as
    /// `[batch, len]` may then be fed at another length (onnxruntime's sessions serve any shapes;
    /// tract's plan is made with a symbolic length, [`super::tract::Runner::load_any_length`]).
    pub(crate) fn load_any_length(runtime: Runtime, model: &Model, which: Role, fed: &[(String, Tensor)], len: usize) -> Result<Runner> {
        match runtime {
            Runtime::Tract => {
                if which == Role::Original {
                    ORIGINAL_LOADS.with(|c| c.set(c.get() + 1));
                }
                super::tract::Runner::load_any_length(model, which, fed, &[], len).map(Runner::Tract)
            }
            _ => Self::load(runtime, model, which, fed, &[]),
        }
    }

    /// Runs on `fed` (same names, shapes and types as loaded): the graph's outputs in order,
    /// then the `extra` tensors asked at load.
    pub(crate) fn run(&self, fed: &[(String, Tensor)]) -> Result<Vec<Tensor>> {
        match self {
            Runner::Tract(r) => Ok(r.run(fed)?.into_iter().map(TValue::into_tensor).collect()),
            #[cfg(feature = "onnxruntime")]
            Runner::Onnxruntime(r) => r.run(fed),
        }
    }
}
