//! The `leadflow` root package holds the integration tests in `tests/`: they run the real
//! handlers against the AWS emulator, with resources provisioned from `template.yaml`.
