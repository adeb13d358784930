//! One `.env` file per function for running a single handler outside `cargo dev`
//! (`cargo lambda watch --env-file .local/env/<binary>.env`, then `cargo lambda invoke` with a
//! sample from `events/`): the function's environment from the template as provisioned, plus
//! the emulator's endpoint, region and dummy credentials.

use std::path::Path;

use crate::manifest::Manifest;

/// The lines of one function's env file, sorted by name. `None` for an unknown binary.
pub fn render(manifest: &Manifest, binary: &str) -> Option<String> {
    let spec = manifest.functions.values().find(|f| f.binary == binary)?;
    let mut vars = spec.environment.clone();
    vars.insert("AWS_ENDPOINT_URL".into(), manifest.endpoint.clone());
    vars.insert("AWS_REGION".into(), manifest.region.clone());
    // moto and LocalStack accept any key; real credentials in the shell are not copied here.
    vars.entry("AWS_ACCESS_KEY_ID".into())
        .or_insert_with(|| "test".into());
    vars.entry("AWS_SECRET_ACCESS_KEY".into())
        .or_insert_with(|| "test".into());
    let mut text = format!(
        "# {binary}: the environment `cargo dev` runs it with (written by cargo dev; see events/README.md)\n"
    );
    for (name, value) in vars {
        // dotenv quoting: values may hold commas, spaces or `#`.
        let quoted = value.replace('\\', "\\\\").replace('"', "\\\"");
        text.push_str(&format!("{name}=\"{quoted}\"\n"));
    }
    Some(text)
}

/// Writes `<dir>/<binary>.env` for every function of the stack.
pub fn write_all(manifest: &Manifest, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for spec in manifest.functions.values() {
        if let Some(text) = render(manifest, &spec.binary) {
            std::fs::write(dir.join(format!("{}.env", spec.binary)), text)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        serde_json::from_value(serde_json::json!({
            "endpoint": "http://127.0.0.1:4566",
            "region": "us-east-1",
            "stack_name": "leadflow-local",
            "resources": {},
            "functions": {
                "CaptureFormFunction": {
                    "binary": "capture-form",
                    "environment": {
                        "TABLE_NAME": "leadflow-local-LeadsTable",
                        "ALLOWED_ORIGINS": "http://localhost:8080,http://127.0.0.1:8080",
                        "CONFIG_CACHE_SECONDS": 15,
                        "NOTE": "say \"hi\""
                    }
                }
            }
        }))
        .expect("manifest")
    }

    #[test]
    fn a_functions_env_file_holds_its_environment_and_the_emulator() {
        let text = render(&manifest(), "capture-form").expect("known binary");
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "ALLOWED_ORIGINS=\"http://localhost:8080,http://127.0.0.1:8080\"",
                "AWS_ACCESS_KEY_ID=\"test\"",
                "AWS_ENDPOINT_URL=\"http://127.0.0.1:4566\"",
                "AWS_REGION=\"us-east-1\"",
                "AWS_SECRET_ACCESS_KEY=\"test\"",
                "CONFIG_CACHE_SECONDS=\"15\"",
                "NOTE=\"say \\\"hi\\\"\"",
                "TABLE_NAME=\"leadflow-local-LeadsTable\"",
            ]
        );
        assert!(render(&manifest(), "no-such-function").is_none());
    }

    #[test]
    fn every_function_gets_a_file() {
        let dir = std::env::temp_dir().join(format!("leadflow-env-{}", std::process::id()));
        write_all(&manifest(), &dir).expect("written");
        assert!(dir.join("capture-form.env").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
