//! The project-local Python environment that serves the emulator (moto) and translates
//! template.yaml (aws-sam-translator, cfn-lint): created on first use, so `cargo dev` and
//! `cargo test` work on a fresh machine with only `python3` installed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::workspace_root;

#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    #[error("python3 is needed for the local emulator; install Python 3.9 or newer ({0})")]
    NoPython(std::io::Error),
    #[error("setting up the Python environment in {dir} failed: {reason}")]
    Setup { dir: PathBuf, reason: String },
}

/// Where the venv lives (`.local/venv` at the workspace root, or `LEADFLOW_VENV`).
pub fn venv_dir() -> PathBuf {
    std::env::var_os("LEADFLOW_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".local/venv"))
}

pub fn scripts_dir() -> PathBuf {
    workspace_root().join("infra/local/py")
}

fn run(cmd: &mut Command, dir: &Path) -> Result<(), PythonError> {
    let out = cmd.output().map_err(|e| PythonError::Setup {
        dir: dir.into(),
        reason: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(PythonError::Setup {
            dir: dir.into(),
            reason: format!("{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr)),
        })
    }
}

/// The venv's python, installing the pinned requirements when they changed. Safe to call from
/// several processes at once (a file lock serialises the installation).
pub fn ensure_venv() -> Result<PathBuf, PythonError> {
    let dir = venv_dir();
    let requirements = scripts_dir().join("requirements.txt");
    let wanted = std::fs::read(&requirements)
        .map(|r| hex::encode(Sha256::digest(r)))
        .map_err(|e| PythonError::Setup {
            dir: dir.clone(),
            reason: format!("{}: {e}", requirements.display()),
        })?;
    let stamp = dir.join(".leadflow-requirements");
    let python = dir.join("bin/python");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && python.exists() {
        return Ok(python);
    }
    std::fs::create_dir_all(dir.parent().unwrap_or(&dir)).map_err(|e| PythonError::Setup {
        dir: dir.clone(),
        reason: e.to_string(),
    })?;
    let lock_path = dir.with_extension("lock");
    let lock = File::create(&lock_path).map_err(|e| PythonError::Setup {
        dir: dir.clone(),
        reason: e.to_string(),
    })?;
    lock.lock().map_err(|e| PythonError::Setup {
        dir: dir.clone(),
        reason: e.to_string(),
    })?;
    // Another process may have finished while we waited for the lock.
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && python.exists() {
        return Ok(python);
    }
    eprintln!(
        "leadflow: installing the local emulator (moto) into {} ...",
        dir.display()
    );
    if !python.exists() {
        let python3 = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        Command::new(&python3)
            .arg("--version")
            .output()
            .map_err(PythonError::NoPython)?;
        run(Command::new(&python3).args(["-m", "venv"]).arg(&dir), &dir)?;
    }
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        &dir,
    )?;
    std::fs::write(&stamp, &wanted).map_err(|e| PythonError::Setup {
        dir: dir.clone(),
        reason: e.to_string(),
    })?;
    Ok(python)
}
