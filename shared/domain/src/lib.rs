//! The lead-management domain, pure: no AWS types, no I/O. `docs/domain.md` describes the
//! domain in words; this crate says it in types.
//!
//! Everything a business rule decides lives here (what a valid lead is, which stage a lead has
//! earned, where it is routed, by when it must be accepted, what a CRM's answer does to it), so
//! the functions only translate between the outside world and these types. A decision that
//! changes a lead returns a [`change::Change`] (timeline entries and events), which one update
//! path stores.
//!
//! The modules form layers without cycles (`tests/module_graph.rs` keeps it so): values
//! (`email`, `fields`, `tag`, `timeline`, `scoring`, `stage`, `sla`, `assignment`,
//! `crm_record`, `bant`), the lead (`lead`, `submission`, `lead_score`, `tracking`, `events`,
//! `change`), and the decisions of each step (`capture`, `qualification`, `routing`, `crm`),
//! with `config` and `ports` on top.

pub mod anonymous;
pub mod assignment;
pub mod bant;
pub mod calendar;
pub mod capture;
pub mod change;
pub mod config;
pub mod crm;
pub mod crm_record;
pub mod email;
pub mod endpoint;
pub mod events;
pub mod fields;
pub mod ladder;
pub mod lead;
pub mod lead_score;
pub mod ports;
pub mod provenance;
pub mod qualification;
pub mod rate_limit;
pub mod routing;
pub mod scoring;
pub mod sla;
pub mod stage;
pub mod submission;
pub mod tag;
pub mod timeline;
pub mod tracking;
pub mod visitor_token;
pub mod webhook;

pub use change::{Change, Decision};
pub use email::{Email, EmailError};
pub use events::{EventEnvelope, LeadEvent, EVENT_SOURCE, SCHEMA_VERSION};
pub use fields::FieldErrors;
pub use lead::{Consent, Lead, LeadId, Qualification, Utm};
pub use stage::{Stage, TransitionError};
pub use submission::{LeadSubmission, SubmissionRules};
pub use tag::Tag;
pub use timeline::{Actor, TimelineAction, TimelineEntry};
pub use tracking::{Identity, TrackedEvent};
