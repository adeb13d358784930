//! The AWS emulator: moto's server started from the project venv, or an endpoint the user
//! runs (LocalStack, a shared moto) named by `AWS_ENDPOINT_URL`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::python::{ensure_venv, scripts_dir, PythonError};

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error(transparent)]
    Python(#[from] PythonError),
    #[error("the emulator did not start: {0}")]
    Start(String),
}

pub struct Emulator {
    endpoint: String,
    /// The moto server we started; it exits when this process does (it watches its stdin).
    child: Option<Child>,
}

impl Emulator {
    /// Uses `AWS_ENDPOINT_URL` if set, else starts moto on `host:port` (port 0: any free port).
    pub fn from_env_or_start(host: &str, port: u16) -> Result<Self, EmulatorError> {
        match std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(endpoint) => Ok(Self {
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                child: None,
            }),
            None => Self::start(host, port),
        }
    }

    /// Starts moto's server and waits until it answers.
    pub fn start(host: &str, port: u16) -> Result<Self, EmulatorError> {
        let python = ensure_venv()?;
        let mut child = Command::new(python)
            .arg(scripts_dir().join("emulator.py"))
            .args(["--host", host, "--port", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("LEADFLOW_EMULATOR_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .map_err(|e| EmulatorError::Start(e.to_string()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| EmulatorError::Start("no stdout".into()))?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| EmulatorError::Start(e.to_string()))?;
        let Some(endpoint) = line.trim().strip_prefix("READY ") else {
            let _ = child.kill();
            let status = child.wait().ok();
            return Err(EmulatorError::Start(format!(
                "moto did not report ready on {host}:{port} (exit: {status:?}); is the port in use? Set LEADFLOW_EMULATOR_LOG=1 to see its output"
            )));
        };
        Ok(Self {
            endpoint: endpoint.to_owned(),
            child: Some(child),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether this process started the emulator (as opposed to using `AWS_ENDPOINT_URL`).
    pub fn is_owned(&self) -> bool {
        self.child.is_some()
    }

    /// The emulator's process id, when this process started it (benches read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
