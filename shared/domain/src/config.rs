//! leadflow's configuration as versioned data: one YAML document (scoring model, routing, SLA
//! policy), checked with errors that name the line and the field, and stored as immutable
//! versions; the active version is what the functions use.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A configuration error, located in the YAML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The field, as a path: `scoring.behaviour[2].points`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}")?;
            if let Some(column) = self.column {
                write!(f, ", column {column}")?;
            }
            f.write_str(": ")?;
        }
        if !self.field.is_empty() && self.field != "." {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Parses YAML into `T`, reporting where and in which field it went wrong. Types validate on
/// parse (newtypes with `try_from`), so their errors carry the location too.
pub fn parse_yaml<T: DeserializeOwned>(yaml: &str) -> Result<T, ConfigError> {
    let deserializer = serde_norway::Deserializer::from_str(yaml);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        let location = inner.location();
        // serde_norway appends "at line L column C" itself; the location is reported apart.
        let message = inner.to_string();
        let message = match message.rfind(" at line ") {
            Some(i) if location.is_some() => message[..i].to_owned(),
            _ => message,
        };
        // It also puts its own, shorter path in front ("scoring.rules[1]: ..."); ours is exact.
        let message = match message.split_once(": ") {
            Some((path, rest)) if !path.contains(' ') && field.starts_with(path) => rest.to_owned(),
            _ => message,
        };
        ConfigError {
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            field,
            message,
        }
    })
}

/// The whole configuration document (`config/leadflow.yaml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadflowConfig {
    pub scoring: crate::scoring::ScoringModel,
    /// Owners, pools, partners and routing rules (the route function needs it).
    #[serde(default)]
    pub routing: Option<crate::routing::RoutingConfig>,
    /// Teams with their calendars and SLA ladders (sla-tick needs it); none: pools keep their
    /// own `accept_within_hours` and no step is ever taken.
    #[serde(default)]
    pub sla: crate::sla::SlaConfig,
}

impl LeadflowConfig {
    /// Parses and validates a configuration document, including what one section says of
    /// another (the pools a team works must be routing's pools).
    pub fn parse(yaml: &str) -> Result<Self, ConfigError> {
        let config: Self = parse_yaml(yaml)?;
        let pool_exists = |p: &str| config.routing.as_ref().is_some_and(|r| r.pool(p).is_some());
        if let Some((team, pool)) = config.sla.pools().find(|(_, p)| !pool_exists(p)) {
            return Err(ConfigError {
                line: None,
                column: None,
                field: format!("sla.teams.{team}.pools"),
                message: format!("{pool:?} is not a pool of routing.pools"),
            });
        }
        Ok(config)
    }

    /// The Secrets Manager ARNs of CRMs and team notification URLs that lie outside the
    /// deployment's secret `prefix`, where each is configured (see
    /// [`crate::routing::RoutingConfig::secrets_outside`]).
    pub fn secrets_outside(&self, prefix: &str) -> Vec<(String, &str)> {
        let mut outside = self
            .routing
            .as_ref()
            .map(|r| r.secrets_outside(prefix))
            .unwrap_or_default();
        outside.extend(self.sla.teams().iter().filter_map(|t| {
            t.notify
                .as_ref()
                .filter(|n| {
                    n.secret_name()
                        .is_some_and(|name| !name.starts_with(prefix))
                })
                .map(|n| {
                    (
                        format!("sla.teams.{}.notify.secret", t.id),
                        n.secret.as_str(),
                    )
                })
        }));
        outside
    }

    /// Every CRM and team notification endpoint with where it is configured
    /// (`routing.owners.anna.crm.endpoint`).
    pub fn endpoints(&self) -> Vec<(String, &crate::webhook::CrmTarget)> {
        let mut all = Vec::new();
        if let Some(r) = &self.routing {
            all.extend(r.crm.iter().map(|t| ("routing.crm".to_owned(), t)));
            all.extend(r.owners.iter().filter_map(|o| {
                o.crm
                    .as_ref()
                    .map(|t| (format!("routing.owners.{}.crm", o.id), t))
            }));
            all.extend(
                r.partners
                    .iter()
                    .map(|p| (format!("routing.partners.{}.crm", p.id), &p.crm)),
            );
        }
        all.extend(self.sla.teams().iter().filter_map(|t| {
            t.notify
                .as_ref()
                .map(|n| (format!("sla.teams.{}.notify", t.id), n))
        }));
        all.into_iter()
            .map(|(at, t)| (format!("{at}.endpoint"), t))
            .collect()
    }

    /// The endpoints leadflow may not send to in `mode`, where each is configured and why:
    /// outside local mode each must be https on a public host (private, loopback and
    /// link-local addresses and local host names are refused; see [`crate::endpoint`]).
    pub fn refused_endpoints(
        &self,
        mode: crate::endpoint::EndpointMode,
    ) -> Vec<(String, crate::endpoint::EndpointError)> {
        self.endpoints()
            .into_iter()
            .filter_map(|(at, t)| t.check_endpoint(mode).err().map(|e| (at, e)))
            .collect()
    }

    /// A one-line account of what the configuration holds.
    pub fn summary(&self) -> String {
        let s = &self.scoring;
        let scoring = format!(
            "scoring model with {} behaviour rules, {} fit rules, {} products; MQL at {}",
            s.behaviour().len(),
            s.fit().len(),
            s.products().len(),
            s.thresholds().mql
        );
        let routing = match &self.routing {
            Some(r) => format!(
                "routing: {} owners, {} pools, {} rules",
                r.owners.len(),
                r.pools.len(),
                r.rules.len()
            ),
            None => "no routing".to_owned(),
        };
        match self.sla.teams().len() {
            0 => format!("{scoring}; {routing}"),
            n => format!("{scoring}; {routing}; SLA: {n} teams"),
        }
    }
}

/// One stored, immutable version of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredConfig {
    pub version: u64,
    pub yaml: String,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/leadflow.yaml");
        let yaml = std::fs::read_to_string(path).expect("config/leadflow.yaml");
        let config =
            LeadflowConfig::parse(&yaml).unwrap_or_else(|e| panic!("config/leadflow.yaml: {e}"));
        assert!(config.scoring.behaviour().len() >= 10);
        let routing = config.routing.expect("the example routes");
        assert!(routing.pool(&routing.default_pool).is_some());
    }

    fn example() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/leadflow.yaml");
        std::fs::read_to_string(path).expect("config/leadflow.yaml")
    }

    /// Values that would allocate without end or overflow a time are refused at check and
    /// push time, with the field named; the bounds themselves pass.
    #[test]
    fn weights_caps_and_durations_are_bounded() {
        let yaml = example();
        let weight_line = "manager: maria, weight: 2,";
        let pool_sla = "members: [anna, ben, cem], sla: { accept_within_hours: 24 }";
        let ladder_step = "{ after: 2d, action: remind_owner }";
        let offer = "offer_expires_after: 2d";
        for (from, to, says) in [
            (
                weight_line,
                "manager: maria, weight: 1000000000,",
                "owners.ben.weight must be 1 to 100",
            ),
            (
                weight_line,
                "manager: maria, weight: 101,",
                "owners.ben.weight",
            ),
            (
                "daily_cap: 40",
                "daily_cap: 0",
                "owners.ben.daily_cap must be 1 to 10000",
            ),
            ("daily_cap: 40", "daily_cap: 10001", "owners.ben.daily_cap"),
            (
                pool_sla,
                "members: [anna, ben, cem], sla: { accept_within_hours: 1000000000000 }",
                "accept_within_hours",
            ),
            (
                pool_sla,
                "members: [anna, ben, cem], sla: { accept_within_hours: 2161 }",
                "pools.dach-crm.sla.accept_within_hours must be 1 to 2160",
            ),
            (
                ladder_step,
                "{ after: 91d, action: remind_owner }",
                "teams.dach-sales.ladder[0].after must be at most 90 days",
            ),
            (
                ladder_step,
                "{ after: 2161h, action: remind_owner }",
                "ladder[0].after",
            ),
            (
                ladder_step,
                "{ after: 1000000000000h, action: remind_owner }",
                "ladder",
            ),
            (
                offer,
                "offer_expires_after: 91d",
                "teams.partners.offer_expires_after must be at most 90 days",
            ),
        ] {
            assert!(yaml.contains(from), "the example has {from:?}");
            let err = LeadflowConfig::parse(&yaml.replacen(from, to, 1)).unwrap_err();
            assert!(err.to_string().contains(says), "{to}: {err}");
        }
        for (from, to) in [
            (weight_line, "manager: maria, weight: 100,"),
            ("daily_cap: 40", "daily_cap: 10000"),
            (
                pool_sla,
                "members: [anna, ben, cem], sla: { accept_within_hours: 2160 }",
            ),
            (ladder_step, "{ after: 90d, action: remind_owner }"),
            (offer, "offer_expires_after: 2160h"),
        ] {
            LeadflowConfig::parse(&yaml.replacen(from, to, 1))
                .unwrap_or_else(|e| panic!("{to} is within bounds: {e}"));
        }
    }

    #[test]
    fn a_bad_model_is_located() {
        let yaml = "scoring:\n  thresholds: { engaged: 50, mql: 20 }\n";
        let err = LeadflowConfig::parse(yaml).unwrap_err();
        assert!(err.line.is_some(), "{err}");
        assert!(err.field.starts_with("scoring"), "{err}");
    }

    #[test]
    fn private_and_plain_http_endpoints_are_refused_outside_local_mode_where_they_are() {
        use crate::endpoint::{EndpointError, EndpointMode};
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/leadflow.yaml");
        let example = std::fs::read_to_string(path).expect("config/leadflow.yaml");
        let config = LeadflowConfig::parse(&example).unwrap();
        // The example sends to a CRM receiver on this machine: fine locally only.
        assert!(config.refused_endpoints(EndpointMode::Local).is_empty());
        let refused = config.refused_endpoints(EndpointMode::Public);
        assert!(!refused.is_empty());
        assert!(refused.iter().all(
            |(at, e)| at.ends_with(".endpoint") && matches!(e, EndpointError::NotPublic { .. })
        ));

        let metadata = example.replace(
            "http://127.0.0.1:9000/hooks/leadflow",
            "https://169.254.169.254/latest",
        );
        let config = LeadflowConfig::parse(&metadata).unwrap();
        let refused = config.refused_endpoints(EndpointMode::Public);
        assert!(!refused.is_empty(), "{metadata}");
        for (at, e) in &refused {
            assert!(
                at.starts_with("routing.") || at.starts_with("sla.teams."),
                "{at}"
            );
            assert!(e.to_string().contains("link-local"), "{at}: {e}");
        }
        let public = example.replace(
            "http://127.0.0.1:9000/hooks/leadflow",
            "https://crm.example.com/hooks/leadflow",
        );
        let config = LeadflowConfig::parse(&public).unwrap();
        assert!(
            config.refused_endpoints(EndpointMode::Public).is_empty(),
            "{:?}",
            config.refused_endpoints(EndpointMode::Public)
        );
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        scoring: Scoring,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Scoring {
        rules: Vec<Rule>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Rule {
        id: String,
        #[serde(deserialize_with = "positive")]
        points: i64,
    }

    fn positive<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let v = i64::deserialize(d)?;
        if v > 0 {
            Ok(v)
        } else {
            Err(serde::de::Error::custom("must be greater than 0"))
        }
    }

    #[test]
    fn errors_name_line_and_field() {
        let yaml =
            "scoring:\n  rules:\n    - id: a\n      points: 5\n    - id: b\n      points: -1\n";
        let err = parse_yaml::<Doc>(yaml).unwrap_err();
        assert_eq!(err.field, "scoring.rules[1].points");
        // A value's own check is located at the start of its mapping (the rule); the field
        // path says which value.
        assert_eq!(err.line, Some(5));
        assert_eq!(err.message, "must be greater than 0");
        assert_eq!(
            err.to_string(),
            format!(
                "line 5, column {}: scoring.rules[1].points: must be greater than 0",
                err.column.unwrap()
            )
        );

        let err =
            parse_yaml::<Doc>("scoring:\n  rules:\n    - id: a\n      pionts: 5\n").unwrap_err();
        assert_eq!(err.line, Some(4));
        assert!(err.message.contains("unknown field `pionts`"), "{err}");

        let err = parse_yaml::<Doc>("scoring: [unclosed\n").unwrap_err();
        assert!(err.line.is_some(), "syntax errors are located: {err}");
    }
}
