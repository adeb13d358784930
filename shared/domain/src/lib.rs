//! The lead-management domain, pure: no AWS types, no I/O.
//!
//! Everything a business rule decides lives here (what a valid lead is, which stage may follow
//! which, what an event looks like), so the functions only translate between the outside world
//! and these types.

pub mod bant;
pub mod config;
pub mod crm;
pub mod email;
pub mod events;
pub mod lead;
pub mod lead_score;
pub mod ports;
pub mod routing;
pub mod scoring;
pub mod stage;
pub mod submission;
pub mod timeline;
pub mod tracking;
pub mod webhook;

pub use email::{Email, EmailError};
pub use events::{EventEnvelope, LeadEvent, EVENT_SOURCE, SCHEMA_VERSION};
pub use lead::{Consent, Lead, LeadId, Qualification, Utm};
pub use stage::{Stage, TransitionError};
pub use submission::{FieldErrors, LeadSubmission, SubmissionRules};
pub use timeline::{Actor, TimelineEntry};
pub use tracking::{Identity, TrackedEvent};
