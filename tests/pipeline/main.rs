//! Integration tests: the real handlers against an AWS emulator, each test with its own stack
//! provisioned from template.yaml. `cargo test` starts the emulator itself (installing moto into
//! `.local/venv` on first use); set `AWS_ENDPOINT_URL` to use another (e.g. LocalStack), and
//! `TEST_LOG=1` to see the handlers' logs.

mod anonymous_history;
mod capture;
mod crm;
mod crm_receiver;
mod emulator;
mod events_samples;
mod faults;
mod iam;
mod local_limits;
mod local_stack;
mod openapi;
mod outbox;
mod rate_limit;
mod requests;
mod routing;
mod sales_api;
mod scoring;
mod sla;
mod soak;
mod support;
mod template;
mod tracking;
