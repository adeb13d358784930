//! Delivers routed leads to the owner's CRM: a POST signed per Standard Webhooks with
//! everything known about the lead, retried with backoff and jitter (by hiding the SQS message)
//! for the retry window, then parked on the DLQ for `leadflow crm replay`. The CRM's answers
//! come back through the `crm-callback` function. Outside local mode only https endpoints on
//! public addresses are sent to, checked after DNS resolution (`transport`); a refused one is
//! parked on the DLQ at once.

pub mod deliver;
pub mod transport;
