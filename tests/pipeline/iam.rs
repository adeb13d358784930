//! Each function's role grants what its code calls, on the table keys it touches, and nothing
//! else. moto does not enforce IAM, so this static analysis is the check:
//!
//! 1. Every table call of the runtime lives in an adapter of `shared/aws` (a port trait's
//!    method); a function crate's own calls to other services (score-event's continuations)
//!    count for that function.
//!    The adapters' sources are scanned for SDK operations (`.put_item()`, `Put::builder()` in a
//!    transaction, `.send_message_batch()`, ...) and for the partition keys they use (`"pk"` and
//!    `":pk"` values, key builders of `dynamo::keys`, helpers such as `get_item(pk, ..)`).
//!    [`ADAPTERS`] pairs each method's operations with its keys; the test fails when that table
//!    and the sources disagree, so it cannot go stale.
//! 2. A function crate is generic over its store (`S: LeadStore + Outbox + ...`), so the port
//!    traits it names are all it can reach (the compiler holds every generic helper of
//!    `shared/lambda` to those bounds). The methods it reaches are those of its traits that it,
//!    or a `shared/lambda` function it calls, calls by name.
//! 3. The union of those methods' accesses (plus what an SQS event source mapping needs) must be
//!    exactly what the role's statements grant: DynamoDB actions per `dynamodb:LeadingKeys`
//!    prefix, index queries on the index, PutEvents under `events:source` and
//!    `events:detail-type` conditions.
//!
//! The analysis is by name and by method, so it errs on the side of granting, never of denying:
//! every function that writes a lead may write outbox items and reads e-mail lookups, since
//! `LeadStore::write` and the shared update path do (only [`NEW_LEADS`] is told apart). Names
//! that std types share (`get`, `count`, `push`) count only when called on a store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_norway::Value;

// ------------------------------------------------------------------ what each adapter touches

/// What each adapter method does, as IAM sees it: (action, key). For DynamoDB the key is the
/// `dynamodb:LeadingKeys` pattern of the partition key (`LEAD#*`, or `CONFIG` exactly), prefixed
/// by the index for index queries (`gsi1:OUTBOX*`); other services have no key. Checked against
/// the sources by `the_adapter_table_matches_the_sources`.
const ADAPTERS: &[(&str, &[(&str, &str)])] = &[
    ("LeadStore::get", &[("dynamodb:GetItem", "LEAD#*")]),
    (
        "LeadStore::find_by_email",
        &[
            ("dynamodb:GetItem", "EMAIL#*"),
            ("dynamodb:GetItem", "LEAD#*"),
        ],
    ),
    (
        // The lead, its timeline and outbox items.
        "LeadStore::write",
        &[
            ("dynamodb:PutItem", "LEAD#*"),
            ("dynamodb:PutItem", "OUTBOX#*"),
        ],
    ),
    (
        // A new lead's e-mail lookup (whose owner is read when the lookup exists already): see
        // NEW_LEADS.
        "LeadStore::write#new",
        &[
            ("dynamodb:PutItem", "EMAIL#*"),
            ("dynamodb:GetItem", "EMAIL#*"),
        ],
    ),
    ("LeadStore::timeline", &[("dynamodb:Query", "LEAD#*")]),
    (
        "LeadStore::append_timeline",
        &[("dynamodb:BatchWriteItem", "LEAD#*")],
    ),
    (
        "CrmLinks::link_external_id",
        &[
            ("dynamodb:PutItem", "CRMREF#*"),
            ("dynamodb:GetItem", "CRMREF#*"),
        ],
    ),
    (
        "CrmLinks::lead_by_external_id",
        &[("dynamodb:GetItem", "CRMREF#*")],
    ),
    (
        // Every shard `OUTBOX#<NN>` and, until a release drops it, the partition `OUTBOX` of
        // items written before sharding: one key builder spells both.
        "Outbox::due",
        &[("dynamodb:Query", "gsi1:OUTBOX*")],
    ),
    ("Outbox::claim", &[("dynamodb:UpdateItem", "OUTBOX#*")]),
    ("Outbox::complete", &[("dynamodb:DeleteItem", "OUTBOX#*")]),
    (
        "IdempotencyStore::begin",
        &[
            ("dynamodb:PutItem", "IDEMP#*"),
            ("dynamodb:GetItem", "IDEMP#*"),
        ],
    ),
    (
        "IdempotencyStore::finish",
        &[("dynamodb:UpdateItem", "IDEMP#*")],
    ),
    (
        "IdempotencyStore::release",
        &[("dynamodb:DeleteItem", "IDEMP#*")],
    ),
    (
        "Counters::increment",
        &[("dynamodb:UpdateItem", "COUNTER#*")],
    ),
    ("Counters::count", &[("dynamodb:GetItem", "COUNTER#*")]),
    ("ConfigStore::active", &[("dynamodb:GetItem", "CONFIG")]),
    ("ConfigStore::version", &[("dynamodb:GetItem", "CONFIG")]),
    (
        // `leadflow config push` only: no function reaches it.
        "ConfigStore::push",
        &[
            ("dynamodb:PutItem", "CONFIG"),
            ("dynamodb:GetItem", "CONFIG"),
        ],
    ),
    (
        "RoutingState::next_turn",
        &[("dynamodb:UpdateItem", "ROUTING#pool#*")],
    ),
    (
        "RoutingState::take_daily_slot",
        &[("dynamodb:UpdateItem", "ROUTING#owner#*")],
    ),
    (
        "RoutingState::release_daily_slot",
        &[("dynamodb:UpdateItem", "ROUTING#owner#*")],
    ),
    ("ScoreStore::score", &[("dynamodb:GetItem", "LEAD#*")]),
    (
        // The score record alone, or in one transaction with segment members and outbox items.
        "ScoreStore::write_score",
        &[
            ("dynamodb:PutItem", "LEAD#*"),
            ("dynamodb:PutItem", "SEG#*"),
            ("dynamodb:PutItem", "OUTBOX#*"),
        ],
    ),
    (
        // The history's bounds (count, age) are kept on its OWNER item.
        "ScoreStore::park_anonymous",
        &[
            ("dynamodb:PutItem", "ANON#*"),
            ("dynamodb:UpdateItem", "ANON#*"),
        ],
    ),
    (
        "ScoreStore::anonymous_events",
        &[("dynamodb:Query", "ANON#*")],
    ),
    (
        "ScoreStore::anonymous_page",
        &[("dynamodb:Query", "ANON#*")],
    ),
    ("ScoreStore::join_cursor", &[("dynamodb:GetItem", "ANON#*")]),
    (
        "ScoreStore::save_join_cursor",
        &[("dynamodb:UpdateItem", "ANON#*")],
    ),
    (
        "ScoreStore::claim_anonymous",
        &[
            ("dynamodb:PutItem", "ANON#*"),
            ("dynamodb:GetItem", "ANON#*"),
        ],
    ),
    (
        "ScoreStore::anonymous_owner",
        &[("dynamodb:GetItem", "ANON#*")],
    ),
    (
        // Kept in the score record.
        "ScoreStore::recent_activities",
        &[("dynamodb:GetItem", "LEAD#*")],
    ),
    ("ScoreStore::segment_page", &[("dynamodb:Query", "SEG#*")]),
    (
        "SlaDueIndex::due_leads",
        &[("dynamodb:Query", "gsi2:SLADUE#*")],
    ),
    (
        "RoutingWaits::routing_wait",
        &[("dynamodb:GetItem", "LEAD#*")],
    ),
    ("RoutingWaits::park", &[("dynamodb:PutItem", "LEAD#*")]),
    (
        "RoutingWaits::end_wait",
        &[("dynamodb:DeleteItem", "LEAD#*")],
    ),
    (
        // Waits due, by the index (keys only; every shard `ROUTEWAIT#<NN>` and the partition
        // `ROUTEWAIT` of waits parked before sharding), each then read from its item.
        "RoutingWaits::waits_due",
        &[
            ("dynamodb:Query", "gsi2:ROUTEWAIT*"),
            ("dynamodb:GetItem", "LEAD#*"),
        ],
    ),
    (
        // The bucket's key (`RATE#<route>#<hash>`) is built by the domain's ClientKey.
        "RateLimitStore::take_token",
        &[
            ("dynamodb:UpdateItem", "RATE#*"),
            ("dynamodb:GetItem", "RATE#*"),
        ],
    ),
    ("Availability::absences", &[("dynamodb:Query", "AWAY")]),
    ("Availability::set_away", &[("dynamodb:PutItem", "AWAY")]),
    (
        "Availability::clear_away",
        &[("dynamodb:DeleteItem", "AWAY")],
    ),
    ("EventPublisher::publish", &[("events:PutEvents", "")]),
    ("TrackedEventQueue::enqueue", &[("sqs:SendMessage", "")]),
    (
        "RetryQueue::retry_later",
        &[("sqs:ChangeMessageVisibility", "")],
    ),
    ("RetryQueue::dead_letter", &[("sqs:SendMessage", "")]),
    (
        "SecretSource::secret",
        &[("secretsmanager:GetSecretValue", "")],
    ),
    ("SecretSource::refresh", &[]),
];

/// A part of a method that only some callers reach: `LeadStore::write` creates a lead (and its
/// e-mail lookup) only for `upsert_by_email`, the one path of `shared/lambda/src/lead_update.rs`
/// that writes without an expected version. So only a function that calls it may write `EMAIL#`.
const NEW_LEADS: (&str, &str) = ("LeadStore::write#new", "upsert_by_email");

/// Port methods named like methods of std types (`Vec::push`, `HashMap::get`,
/// `Iterator::count`): reached only when called on a store (`store.get(..)`).
const COMMON_NAMES: &[&str] = &["get", "count", "push"];

/// What Lambda's SQS poller does with the function's role (not the function's code).
const EVENT_SOURCE_ACTIONS: &[&str] = &[
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
];

/// Partition keys no function may write, and the functions that may (everything else reads
/// configuration; `leadflow config push` is run by an operator, not by a function).
const GUARDED_WRITES: &[(&str, &[&str])] = &[
    ("CONFIG", &[]),
    (
        "ROUTING#",
        &["RouteFunction", "ScoreEventFunction", "SlaTickFunction"],
    ),
];

const WRITE_ACTIONS: &[&str] = &[
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
];

/// DynamoDB actions whose requests carry their partition keys (per item for batches and
/// transactions), which `dynamodb:LeadingKeys` can therefore limit.
const KEYED_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
];

/// SDK operation → IAM action. `transact_write_items` is authorised per item (below).
const SDK_OPERATIONS: &[(&str, &str)] = &[
    ("get_item", "dynamodb:GetItem"),
    ("put_item", "dynamodb:PutItem"),
    ("update_item", "dynamodb:UpdateItem"),
    ("delete_item", "dynamodb:DeleteItem"),
    ("query", "dynamodb:Query"),
    ("scan", "dynamodb:Scan"),
    ("batch_write_item", "dynamodb:BatchWriteItem"),
    ("batch_get_item", "dynamodb:BatchGetItem"),
    ("describe_table", "dynamodb:DescribeTable"),
    ("list_tags_of_resource", "dynamodb:ListTagsOfResource"),
    ("send_message", "sqs:SendMessage"),
    ("send_message_batch", "sqs:SendMessage"),
    ("receive_message", "sqs:ReceiveMessage"),
    ("delete_message", "sqs:DeleteMessage"),
    ("delete_message_batch", "sqs:DeleteMessage"),
    ("change_message_visibility", "sqs:ChangeMessageVisibility"),
    (
        "change_message_visibility_batch",
        "sqs:ChangeMessageVisibility",
    ),
    ("get_queue_attributes", "sqs:GetQueueAttributes"),
    ("put_events", "events:PutEvents"),
    ("get_secret_value", "secretsmanager:GetSecretValue"),
];

/// Items of a TransactWriteItems call, each authorised as its own action.
const TRANSACTION_ITEMS: &[(&str, &str)] = &[
    ("Put::builder()", "dynamodb:PutItem"),
    ("Update::builder()", "dynamodb:UpdateItem"),
    ("Delete::builder()", "dynamodb:DeleteItem"),
    ("ConditionCheck::builder()", "dynamodb:ConditionCheckItem"),
];

/// The types whose port implementations are the runtime's adapters.
const ADAPTER_TYPES: &[&str] = &[
    "DynamoStore",
    "EventBridgePublisher",
    "SqsEventQueue",
    "SqsRetryQueue",
    "Secrets",
];

// ------------------------------------------------------------------ reading Rust sources

fn root() -> PathBuf {
    leadflow_local::workspace_root()
}

/// A source file without comments and unit tests. `code` also has the contents of string and
/// character literals blanked (same byte offsets), so braces, calls and names inside literals
/// do not count; `text` keeps the literals, where the key prefixes are.
struct Src {
    text: String,
    code: String,
}

fn load(path: &Path) -> Src {
    parse(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn parse(raw: &str) -> Src {
    // What is compiled for tests only is not what the function runs.
    let raw = match raw.find("#[cfg(test)]") {
        Some(i) => &raw[..i],
        None => raw,
    };
    let b = raw.as_bytes();
    let mut text = b.to_vec();
    let mut code = b.to_vec();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                text[i] = b' ';
                code[i] = b' ';
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = raw[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            for j in i..end {
                if b[j] != b'\n' {
                    text[j] = b' ';
                    code[j] = b' ';
                }
            }
            i = end;
        } else if b[i] == b'r' && (i == 0 || !ident(b[i - 1])) && {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            b.get(i + 1 + hashes) == Some(&b'"')
        } {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            let start = i + 1 + hashes + 1;
            let close = format!("\"{}", "#".repeat(hashes));
            let end = raw[start..].find(&close).map_or(b.len(), |e| start + e);
            for c in &mut code[start..end] {
                *c = b'_';
            }
            i = end + close.len();
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                if b[j] == b'\\' {
                    code[j] = b'_';
                    j += 1;
                }
                if j < b.len() {
                    code[j] = b'_';
                }
                j += 1;
            }
            i = j + 1;
        } else if b[i] == b'\'' && (b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\')) {
            // A character literal ('{', '\n'), not a lifetime.
            let end = raw[i + 2..].find('\'').map_or(b.len(), |e| i + 2 + e);
            for c in &mut code[i + 1..end] {
                *c = b'_';
            }
            i = end + 1;
        } else {
            i += 1;
        }
    }
    Src {
        text: String::from_utf8(text).expect("UTF-8"),
        code: String::from_utf8(code).expect("UTF-8"),
    }
}

/// The offset of the bracket that closes the one at `open`.
fn closing(code: &str, open: usize) -> usize {
    let b = code.as_bytes();
    let (o, c) = match b[open] {
        b'{' => (b'{', b'}'),
        b'(' => (b'(', b')'),
        other => panic!("not a bracket: {}", other as char),
    };
    let mut depth = 0;
    for (i, &x) in b.iter().enumerate().skip(open) {
        if x == o {
            depth += 1;
        } else if x == c {
            depth -= 1;
            if depth == 0 {
                return i;
            }
        }
    }
    b.len()
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Offsets of `word` where it is a whole identifier.
fn words<'a>(code: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    code.match_indices(word).map(|(i, _)| i).filter(move |&i| {
        let b = code.as_bytes();
        (i == 0 || !is_ident(b[i - 1])) && b.get(i + word.len()).is_none_or(|&c| !is_ident(c))
    })
}

/// A `fn` item: its name, the `impl` it belongs to (trait, self type), parameters, body.
struct Fn {
    name: String,
    owner_trait: Option<String>,
    owner_type: Option<String>,
    params: Vec<String>,
    /// Signature and body, for the trait bounds a function names.
    whole: std::ops::Range<usize>,
    body: std::ops::Range<usize>,
}

fn last_segment(path: &str) -> String {
    let path = path.split('<').next().unwrap_or_default().trim();
    path.rsplit("::")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn fns(src: &Src) -> Vec<Fn> {
    let code = &src.code;
    // impl blocks: (range, trait, type)
    let mut impls = Vec::new();
    for i in words(code, "impl") {
        let line_start = code[..i].rfind('\n').map_or(0, |n| n + 1);
        if !code[line_start..i].trim().is_empty() {
            continue; // `impl Trait` in a type position
        }
        let Some(open) = code[i..].find('{').map(|o| i + o) else {
            continue;
        };
        let mut header = code[i + 4..open].trim();
        if header.starts_with('<') {
            let mut depth = 0;
            for (k, c) in header.char_indices() {
                match c {
                    '<' => depth += 1,
                    '>' => {
                        depth -= 1;
                        if depth == 0 {
                            header = header[k + 1..].trim();
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
        let header = header.split(" where").next().unwrap_or_default();
        let (tr, ty) = match header.split_once(" for ") {
            Some((t, ty)) => (Some(last_segment(t)), last_segment(ty)),
            None => (None, last_segment(header)),
        };
        impls.push((open..closing(code, open), tr, ty));
    }
    let mut out = Vec::new();
    for i in words(code, "fn") {
        let rest = &code[i + 2..];
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|&c| c.is_ascii_alphanumeric() || c == '_')
            .collect();
        if name.is_empty() {
            continue; // `fn(` pointer types, `Fn` bounds are not items
        }
        let Some(end) = rest.find(['{', ';']).map(|e| i + 2 + e) else {
            continue;
        };
        if code.as_bytes()[end] == b';' {
            continue; // a declaration without a body
        }
        let params = code[i..end]
            .find('(')
            .map(|p| {
                let p = i + p;
                code[p + 1..closing(code, p)]
                    .split(',')
                    .filter_map(|a| a.split_once(':').map(|(n, _)| n.trim().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let body = end..closing(code, end);
        let owner = impls
            .iter()
            .filter(|(r, _, _)| r.start < i && i < r.end)
            .min_by_key(|(r, _, _)| r.end - r.start);
        out.push(Fn {
            name,
            owner_trait: owner.and_then(|(_, t, _)| t.clone()),
            owner_type: owner.map(|(_, _, ty)| ty.clone()),
            params,
            whole: i..body.end,
            body,
        });
    }
    out
}

/// Names called in `code`: identifiers followed by `(`, with whether a `.` precedes them and
/// whether the parentheses are empty.
fn calls(code: &str) -> Vec<(String, usize, bool, bool)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_ident(b[i]) && (i == 0 || !is_ident(b[i - 1])) {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            if b.get(i) == Some(&b'(') && !b[start].is_ascii_digit() {
                let dotted = start > 0 && b[start - 1] == b'.';
                let empty = b.get(i + 1) == Some(&b')');
                out.push((code[start..i].to_owned(), start, dotted, empty));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The first string literal in `text[range]`.
fn first_literal(text: &str) -> Option<&str> {
    let start = text.find('"')? + 1;
    let end = start + text[start..].find('"')?;
    Some(&text[start..end])
}

/// A key written as a `format!` literal or a plain one, as a LeadingKeys pattern.
fn pattern(literal: &str) -> String {
    match literal.find('{') {
        Some(i) => format!("{}*", &literal[..i]),
        None => literal.to_owned(),
    }
}

// ------------------------------------------------------------------ the adapters of shared/aws

/// What the source of one adapter method shows.
struct Access {
    actions: BTreeSet<String>,
    keys: BTreeSet<String>,
    /// A partition key the analysis cannot spell (built by a domain type, such as a rate-limit
    /// bucket's): [`ADAPTERS`] names it, and may name more keys than were found.
    opaque: bool,
}

/// The variable an expression starts from (`key` of `key.as_str()`).
fn root_ident(expr: &str) -> String {
    expr.trim()
        .trim_start_matches('&')
        .chars()
        .take_while(|&c| c.is_ascii_alphanumeric() || c == '_')
        .collect()
}

struct Adapters {
    files: Vec<(PathBuf, Src)>,
    /// `dynamo::keys`: builder or constant → pattern.
    keys: BTreeMap<String, String>,
    /// `const NAME: &str = "..."` of every file.
    consts: BTreeMap<String, String>,
}

impl Adapters {
    fn load() -> Self {
        let dir = root().join("shared/aws/src");
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .expect("shared/aws/src")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        paths.sort();
        let files: Vec<_> = paths
            .into_iter()
            .map(|p| {
                let s = load(&p);
                (p, s)
            })
            .collect();
        let mut consts = BTreeMap::new();
        for (_, src) in &files {
            for i in words(&src.code, "const") {
                let line_end = src.code[i..].find(';').map_or(src.code.len(), |e| i + e);
                let decl = &src.text[i..line_end];
                if let (Some((name, _)), Some(value)) = (
                    decl["const".len()..].trim().split_once(':'),
                    first_literal(decl),
                ) {
                    consts.insert(name.trim().to_owned(), value.to_owned());
                }
            }
        }
        let (_, dynamo) = files
            .iter()
            .find(|(p, _)| p.ends_with("dynamo.rs"))
            .expect("shared/aws/src/dynamo.rs");
        let start = dynamo.code.find("pub mod keys").expect("dynamo::keys");
        let open = start + dynamo.code[start..].find('{').expect("keys {");
        let range = open..closing(&dynamo.code, open);
        let mut keys = BTreeMap::new();
        for f in fns(dynamo) {
            if range.contains(&f.body.start) {
                if let Some(lit) = first_literal(&dynamo.text[f.body.clone()]) {
                    keys.insert(f.name, pattern(lit));
                }
            }
        }
        for i in words(&dynamo.code[range.clone()], "const") {
            let i = range.start + i;
            let end = i + dynamo.code[i..].find(';').expect(";");
            let decl = &dynamo.text[i..end];
            if let (Some((name, _)), Some(value)) = (
                decl["const".len()..].trim().split_once(':'),
                first_literal(decl),
            ) {
                keys.insert(name.trim().to_owned(), value.to_owned());
            }
        }
        Self {
            files,
            keys,
            consts,
        }
    }

    fn all_fns(&self) -> Vec<(usize, Vec<Fn>)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, (_, s))| (i, fns(s)))
            .collect()
    }

    /// A partition key expression as a pattern; `None` for a parameter (the caller's key).
    fn resolve(&self, expr: &str, body: &str, depth: u8) -> Option<String> {
        let mut e = expr.trim().trim_start_matches('&').trim();
        for suffix in [".clone()", ".to_owned()", ".to_string()", ".into()"] {
            e = e.strip_suffix(suffix).unwrap_or(e);
        }
        if let Some(i) = e.find("keys::") {
            let name: String = e[i + 6..]
                .chars()
                .take_while(|&c| c.is_ascii_alphanumeric() || c == '_')
                .collect();
            return Some(
                self.keys
                    .get(&name)
                    .unwrap_or_else(|| panic!("keys::{name} is not a key builder"))
                    .clone(),
            );
        }
        if e.starts_with("format!(") || e.starts_with('"') {
            return first_literal(e).map(pattern);
        }
        if !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            if e.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                return self.consts.get(e).cloned();
            }
            let binding = format!("let {e} = ");
            if let Some(i) = body.find(&binding) {
                let rest = &body[i + binding.len()..];
                let value = &rest[..rest.find(';').unwrap_or(rest.len())];
                if depth < 4 {
                    return self.resolve(value, body, depth + 1);
                }
            }
        }
        None
    }

    /// The actions and keys of one method, through the helpers it calls on `self`.
    fn access(
        &self,
        all: &[(usize, Vec<Fn>)],
        file: usize,
        f: &Fn,
        seen: &mut BTreeSet<(String, String)>,
    ) -> Access {
        let src = &self.files[file].1;
        let code = &src.code[f.body.clone()];
        let text = &src.text[f.body.clone()];
        let mut actions = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut opaque = false;
        let owner = f.owner_type.clone().unwrap_or_default();
        seen.insert((owner.clone(), f.name.clone()));

        for (name, _, dotted, empty) in calls(code) {
            if dotted && empty {
                if let Some((_, action)) = SDK_OPERATIONS.iter().find(|(op, _)| *op == name) {
                    actions.insert((*action).to_owned());
                }
            }
        }
        for (item, action) in TRANSACTION_ITEMS {
            if code
                .match_indices(item)
                .any(|(i, _)| i == 0 || !is_ident(code.as_bytes()[i - 1]))
            {
                actions.insert((*action).to_owned());
            }
        }
        // Keys: the values of `pk` (items, key maps) and `:pk` (key conditions). For an index
        // query only the key condition names the leading key (an ExclusiveStartKey also holds
        // the table's `pk`).
        let index = code.find(".index_name(").map(|i| {
            let open = i + ".index_name".len();
            let arg = &text[open + 1..closing(code, open)];
            self.resolve(arg, text, 0)
                .unwrap_or_else(|| panic!("{}: index {arg}", f.name))
        });
        let markers: &[&str] = if index.is_some() {
            &["\":pk\""]
        } else {
            &["\"pk\"", "\":pk\""]
        };
        for marker in markers {
            for (i, _) in text.match_indices(marker) {
                // The value follows on the same line: `("pk".into(), s(...))`, `.key("pk", s(..))`.
                let line = code[i..].find('\n').map_or(code.len(), |e| i + e);
                let Some(s) = code[i..line]
                    .match_indices("s(")
                    .map(|(s, _)| i + s)
                    .find(|&s| !is_ident(code.as_bytes()[s - 1]))
                else {
                    continue;
                };
                let open = s + 1;
                let arg = &text[open + 1..closing(code, open)];
                match self.resolve(arg, text, 0) {
                    Some(k) => {
                        keys.insert(match &index {
                            Some(ix) => format!("{ix}:{k}"),
                            None => k,
                        });
                    }
                    // A helper's own `pk` parameter is resolved at its callers.
                    None => opaque |= root_ident(arg) != "pk",
                }
            }
        }
        // Helpers and other methods of the same type called on `self`.
        for (name, at, dotted, empty) in calls(code) {
            let on_self = if dotted {
                let before = code[..at - 1].trim_end();
                before.ends_with("self")
                    && !before[..before.len() - 4]
                        .ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            } else {
                code[..at].ends_with("Self::") || code[..at].ends_with(&format!("{owner}::"))
            };
            // `.put_item()` on a client is an SDK call even where a helper shares its name.
            if !on_self || (empty && SDK_OPERATIONS.iter().any(|(op, _)| *op == name)) {
                continue;
            }
            for (hf, hfns) in all {
                for h in hfns {
                    if h.name != name || h.owner_type.as_deref() != Some(owner.as_str()) {
                        continue;
                    }
                    // A helper whose first parameter is the partition key: the key is the
                    // caller's first argument.
                    if h.params
                        .iter()
                        .find(|p| *p != "&self" && *p != "self")
                        .map(String::as_str)
                        == Some("pk")
                    {
                        let open = at + name.len();
                        let close = closing(code, open);
                        let first = code[open + 1..close]
                            .char_indices()
                            .scan(0i32, |depth, (k, c)| {
                                match c {
                                    '(' | '[' | '{' => *depth += 1,
                                    ')' | ']' | '}' => *depth -= 1,
                                    _ => {}
                                }
                                Some((k, c, *depth))
                            })
                            .find(|&(_, c, d)| c == ',' && d == 0)
                            .map_or(close, |(k, _, _)| open + 1 + k);
                        let arg = &text[open + 1..first];
                        match self.resolve(arg, text, 0) {
                            Some(k) => {
                                keys.insert(k);
                            }
                            None => opaque |= root_ident(arg) != "pk",
                        }
                    }
                    if seen.contains(&(owner.clone(), name.clone())) {
                        continue;
                    }
                    let inner = self.access(all, *hf, h, &mut seen.clone());
                    actions.extend(inner.actions);
                    keys.extend(inner.keys);
                    opaque |= inner.opaque;
                }
            }
        }
        Access {
            actions,
            keys,
            opaque,
        }
    }

    /// Port methods implemented by the adapters: `Trait::method` → (actions, keys).
    fn methods(&self) -> BTreeMap<String, Access> {
        let all = self.all_fns();
        let mut out = BTreeMap::new();
        for (file, list) in &all {
            for f in list {
                let (Some(tr), Some(ty)) = (&f.owner_trait, &f.owner_type) else {
                    continue;
                };
                if !ADAPTER_TYPES.contains(&ty.as_str()) {
                    continue;
                }
                let access = self.access(&all, *file, f, &mut BTreeSet::new());
                out.insert(format!("{tr}::{}", f.name), access);
            }
        }
        out
    }
}

fn adapter_table() -> BTreeMap<&'static str, Vec<(&'static str, &'static str)>> {
    ADAPTERS.iter().map(|(m, a)| (*m, a.to_vec())).collect()
}

/// The table by method as the sources see it (`write` and `write#new` together).
fn adapter_table_by_method() -> BTreeMap<String, Vec<(&'static str, &'static str)>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (m, a) in ADAPTERS {
        let method = m.split('#').next().unwrap_or_default().to_owned();
        out.entry(method).or_default().extend(a.iter().copied());
    }
    out
}

#[test]
fn the_adapter_table_matches_the_sources() {
    let adapters = Adapters::load();
    let found = adapters.methods();
    let table = adapter_table_by_method();
    let mut problems = Vec::new();
    for (method, access) in &found {
        let (actions, keys) = (&access.actions, &access.keys);
        let Some(entry) = table.get(method.as_str()) else {
            problems.push(format!(
                "{method} (shared/aws) is missing from ADAPTERS in tests/pipeline/iam.rs: it calls {actions:?} on {keys:?}"
            ));
            continue;
        };
        let t_actions: BTreeSet<String> = entry.iter().map(|(a, _)| (*a).to_owned()).collect();
        let t_keys: BTreeSet<String> = entry
            .iter()
            .filter(|(_, k)| !k.is_empty())
            .map(|(_, k)| (*k).to_owned())
            .collect();
        let keys_agree = if access.opaque {
            keys.is_subset(&t_keys)
        } else {
            &t_keys == keys
        };
        if &t_actions != actions || !keys_agree {
            problems.push(format!(
                "{method}: the source calls {actions:?} on keys {keys:?}; ADAPTERS says {t_actions:?} on {t_keys:?}"
            ));
        }
    }
    for method in table.keys() {
        if !found.contains_key(method) {
            problems.push(format!(
                "ADAPTERS names {method}, which shared/aws does not implement"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    // The analysis itself found what it should (a guard against a parser that sees nothing).
    assert_eq!(
        found["LeadStore::write"].keys,
        BTreeSet::from(["LEAD#*".into(), "EMAIL#*".into(), "OUTBOX#*".into()])
    );
    assert_eq!(
        found["SlaDueIndex::due_leads"].keys,
        BTreeSet::from(["gsi2:SLADUE#*".to_owned()])
    );
}

/// Table calls only in the adapters (where their keys are read), no AWS call in the shared
/// Lambda glue; a function crate's own calls to other services count as its own
/// ([`direct_operations`]).
#[test]
fn table_calls_live_only_in_the_adapters() {
    let mut dirs = vec![root().join("shared/lambda/src")];
    for entry in std::fs::read_dir(root().join("functions")).expect("functions") {
        dirs.push(entry.expect("entry").path().join("src"));
    }
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).expect("src") {
            let path = entry.expect("entry").path();
            let src = load(&path);
            let needles: &[&str] = if dir.starts_with(root().join("shared")) {
                &["aws_sdk_", ".client()"]
            } else {
                &["aws_sdk_dynamodb", ".dynamodb()"]
            };
            for needle in needles {
                assert!(
                    !src.code.contains(needle),
                    "{}: `{needle}`: such AWS calls belong in shared/aws, where tests/pipeline/iam.rs reads their keys",
                    path.display()
                );
            }
        }
    }
}

// ------------------------------------------------------------------ what each function reaches

/// The SDK operations a function crate calls itself (in files that use an SDK crate).
fn direct_operations(binary: &str) -> BTreeSet<String> {
    let dir = root().join("functions").join(binary).join("src");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let src = load(&entry.expect("entry").path());
        if !src.code.contains("aws_sdk_") {
            continue;
        }
        for (name, _, dotted, empty) in calls(&src.code) {
            if let Some((_, action)) = SDK_OPERATIONS.iter().find(|(op, _)| *op == name) {
                if dotted && empty {
                    out.insert((*action).to_owned());
                }
            }
        }
    }
    out
}

/// The port methods a function crate reaches (see the module comment).
/// `binary` and every function crate it depends on, directly or through another one (by the
/// `<crate>.workspace = true` lines of their Cargo.toml).
fn function_crates(binary: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut todo = vec![binary.to_owned()];
    while let Some(name) = todo.pop() {
        if !found.insert(name.clone()) {
            continue;
        }
        let manifest = root().join("functions").join(&name).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        for line in text.lines() {
            let dep = line.split(['.', ' ', '=']).next().unwrap_or_default();
            if !dep.is_empty() && dep != name && root().join("functions").join(dep).is_dir() {
                todo.push(dep.to_owned());
            }
        }
    }
    found
}

fn reached_methods(binary: &str) -> BTreeSet<String> {
    let table = adapter_table();
    let traits: BTreeSet<&str> = table
        .keys()
        .map(|m| m.split("::").next().unwrap_or_default())
        .collect();
    // The function's own sources, and those of the function crates it runs as a library
    // (score-event qualifies and routes through qualify and route; sla-tick routes).
    let mut own = String::new();
    for crate_name in function_crates(binary) {
        let dir = root().join("functions").join(&crate_name).join("src");
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                own.push_str(&load(&path).code);
                own.push('\n');
            }
        }
    }
    let named: BTreeSet<&str> = traits
        .iter()
        .copied()
        .filter(|t| words(&own, t).next().is_some())
        .collect();
    assert!(!named.is_empty(), "functions/{binary} names no port trait");

    // shared/lambda functions by name (methods included), and what they call.
    let lambda: Vec<(String, String)> = std::fs::read_dir(root().join("shared/lambda/src"))
        .expect("shared/lambda/src")
        .flat_map(|e| {
            let src = load(&e.expect("entry").path());
            fns(&src)
                .into_iter()
                .map(|f| (f.name.clone(), src.code[f.whole.clone()].to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    // Every name called expands the shared/lambda functions of that name; port methods are
    // only ever called as methods (`store.write(..)`), so only `.name(` reaches one.
    let mut called: BTreeSet<String> = BTreeSet::new();
    let mut methods: BTreeSet<String> = BTreeSet::new();
    let mut todo = vec![own];
    while let Some(code) = todo.pop() {
        for (name, at, dotted, _) in calls(&code) {
            let receiver: String = code[..at.saturating_sub(1)]
                .trim_end()
                .chars()
                .rev()
                .take_while(|&c| c.is_ascii_alphanumeric() || c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if dotted && (!COMMON_NAMES.contains(&name.as_str()) || receiver.contains("store")) {
                methods.insert(name.clone());
            }
            if called.insert(name.clone()) {
                todo.extend(
                    lambda
                        .iter()
                        .filter(|(n, _)| *n == name)
                        .map(|(_, body)| body.clone()),
                );
            }
        }
    }
    table
        .keys()
        .filter(|m| {
            let (t, name) = m.split_once("::").unwrap_or_default();
            let (name, part) = name.split_once('#').unwrap_or((name, ""));
            named.contains(t)
                && methods.contains(name)
                && (part.is_empty() || (**m == NEW_LEADS.0 && called.contains(NEW_LEADS.1)))
        })
        .map(|m| (*m).to_owned())
        .collect()
}

// ------------------------------------------------------------------ the template

fn template() -> Value {
    let path = root().join("template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).expect("template.yaml"))
        .expect("template.yaml is YAML")
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    }
}

fn strings(v: &Value) -> BTreeSet<String> {
    as_list(v)
        .into_iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// A resource as text, as `!Sub` would spell it: `!GetAtt LeadsTable.Arn` and
/// `!Sub "${LeadsTable.Arn}"` are both `${LeadsTable.Arn}`, `!Ref Fn` is `${Fn}`.
fn resource(v: &Value) -> String {
    match v {
        Value::Tagged(t) => {
            let inner = t.value.as_str().unwrap_or_default();
            if t.tag == "GetAtt" || t.tag == "Ref" {
                format!("${{{inner}}}")
            } else {
                inner.to_owned()
            }
        }
        other => other.as_str().unwrap_or_default().to_owned(),
    }
}

const TABLE: &str = "${LeadsTable.Arn}";

struct Statement {
    sid: String,
    actions: BTreeSet<String>,
    resources: BTreeSet<String>,
    condition: Value,
}

fn statements(function: &Value) -> Vec<Statement> {
    as_list(&function["Properties"]["Policies"])
        .into_iter()
        .flat_map(|p| as_list(&p["Statement"]))
        .map(|s| {
            assert_eq!(s["Effect"], "Allow", "{s:?}");
            assert!(s.get("NotAction").is_none() && s.get("NotResource").is_none());
            Statement {
                sid: s["Sid"].as_str().unwrap_or("(no Sid)").to_owned(),
                actions: strings(&s["Action"]),
                resources: as_list(&s["Resource"]).into_iter().map(resource).collect(),
                condition: s["Condition"].clone(),
            }
        })
        .collect()
}

/// The functions of the template: logical id → (binary, resource).
fn functions(t: &Value) -> Vec<(String, String, &Value)> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(k, r)| {
            (
                k.as_str().unwrap_or_default().to_owned(),
                r["Metadata"]["BuildProperties"]["Binary"]
                    .as_str()
                    .expect("Binary")
                    .to_owned(),
                r,
            )
        })
        .collect()
}

/// The queues Lambda polls for a function (its event source mappings).
fn polled_queues(t: &Value, function: &str) -> BTreeSet<String> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .values()
        .filter(|r| r["Type"] == "AWS::Lambda::EventSourceMapping")
        .filter(|r| resource(&r["Properties"]["FunctionName"]) == format!("${{{function}}}"))
        .map(|r| resource(&r["Properties"]["EventSourceArn"]))
        .collect()
}

/// A LeadingKeys pattern admits a key pattern: equal, or a wider prefix.
fn admits(granted: &str, used: &str) -> bool {
    granted == used
        || granted
            .strip_suffix('*')
            .is_some_and(|prefix| used.starts_with(prefix))
}

/// A granted pattern that could match a key starting with `prefix`.
fn may_touch(granted: &str, prefix: &str) -> bool {
    match granted.strip_suffix('*') {
        Some(p) => p.starts_with(prefix) || prefix.starts_with(p),
        None => granted.starts_with(prefix),
    }
}

/// What a role grants on the table: (action, key) with the key as in [`ADAPTERS`]; problems
/// with statements that are not fit to be read that way.
fn granted_table_access(
    name: &str,
    statements: &[Statement],
    problems: &mut Vec<String>,
) -> BTreeSet<(String, String)> {
    let mut granted = BTreeSet::new();
    for s in statements {
        let dynamo: Vec<_> = s
            .actions
            .iter()
            .filter(|a| a.starts_with("dynamodb:"))
            .collect();
        if dynamo.is_empty() {
            continue;
        }
        if dynamo.len() != s.actions.len() {
            problems.push(format!(
                "{name}.{}: DynamoDB and other actions in one statement",
                s.sid
            ));
        }
        // ForAllValues holds for a request without keys (Scan, DescribeTable): only actions
        // that name their keys may rely on it.
        for a in &dynamo {
            if !KEYED_ACTIONS.contains(&a.as_str()) {
                problems.push(format!(
                    "{name}.{}: {a} names no partition key, so dynamodb:LeadingKeys cannot limit it",
                    s.sid
                ));
            }
        }
        let leading = strings(&s.condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]);
        if leading.is_empty() {
            problems.push(format!(
                "{name}.{}: grants {dynamo:?} without a ForAllValues:StringLike dynamodb:LeadingKeys condition",
                s.sid
            ));
            continue;
        }
        if leading
            .iter()
            .any(|k| k.trim_end_matches('*').contains(['*', '?']) || k == "*")
        {
            problems.push(format!(
                "{name}.{}: LeadingKeys wildcard inside {leading:?}",
                s.sid
            ));
        }
        for r in &s.resources {
            let index = match r.strip_prefix(TABLE) {
                Some("") => None,
                Some(rest) => match rest.strip_prefix("/index/") {
                    Some(ix) if !ix.contains('*') => Some(ix.to_owned()),
                    _ => {
                        problems.push(format!("{name}.{}: resource {r}", s.sid));
                        continue;
                    }
                },
                None => {
                    problems.push(format!(
                        "{name}.{}: resource {r} is not the leads table",
                        s.sid
                    ));
                    continue;
                }
            };
            for a in &dynamo {
                for k in &leading {
                    granted.insert((
                        (*a).clone(),
                        match &index {
                            Some(ix) => format!("{ix}:{k}"),
                            None => k.clone(),
                        },
                    ));
                }
            }
        }
    }
    granted
}

/// What each function needs: (action, key) from its adapters.
fn required(binary: &str) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let table = adapter_table();
    let methods = reached_methods(binary);
    let needed: BTreeSet<(String, String)> = methods
        .iter()
        .flat_map(|m| table[m.as_str()].iter())
        .map(|(a, k)| ((*a).to_owned(), (*k).to_owned()))
        .collect();
    (methods, needed)
}

/// The statements a role should have on the table: keys grouped by the actions they need.
fn suggest(needed: &BTreeSet<(String, String)>) -> String {
    let mut by_key: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (a, k) in needed.iter().filter(|(a, _)| a.starts_with("dynamodb:")) {
        by_key.entry(k.as_str()).or_default().insert(a.as_str());
    }
    let mut by_actions: BTreeMap<(Option<&str>, Vec<&str>), Vec<&str>> = BTreeMap::new();
    for (k, actions) in by_key {
        let (ix, key) = match k.split_once(':') {
            Some((ix, key)) => (Some(ix), key),
            None => (None, k),
        };
        by_actions
            .entry((ix, actions.into_iter().collect()))
            .or_default()
            .push(key);
    }
    by_actions
        .into_iter()
        .map(|((ix, actions), keys)| {
            format!(
                "  {actions:?} on {} for LeadingKeys {keys:?}",
                ix.map_or("the table".to_owned(), |ix| format!("index {ix}"))
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn each_role_grants_what_its_function_calls_and_nothing_else() {
    let t = template();
    let mut problems = Vec::new();
    let mut suggestions = Vec::new();
    for (name, binary, f) in functions(&t) {
        let (methods, needed) = required(&binary);
        let statements = statements(f);
        let mut local = Vec::new();

        // DynamoDB, per key.
        let granted = granted_table_access(&name, &statements, &mut local);
        for (action, key) in needed.iter().filter(|(a, _)| a.starts_with("dynamodb:")) {
            if !granted.iter().any(|(a, k)| a == action && admits(k, key)) {
                local.push(format!(
                    "{name}: {binary} calls {action} on {key} but its role does not allow it"
                ));
            }
        }
        for (action, key) in &granted {
            // Exactly the patterns used: a wider one (`ROUTING#*` for `ROUTING#pool#*`) would
            // also admit keys that no code writes.
            if !needed.iter().any(|(a, k)| a == action && k == key) {
                local.push(format!(
                    "{name}: the role allows {action} on {key}, which {binary} never uses"
                ));
            }
        }

        // Other services, per action; the event source mapping's actions on its own queue.
        let queues = polled_queues(&t, &name);
        let mut needed_other: BTreeSet<String> = needed
            .iter()
            .filter(|(a, _)| !a.starts_with("dynamodb:"))
            .map(|(a, _)| a.clone())
            .collect();
        needed_other.extend(direct_operations(&binary));
        if !queues.is_empty() {
            needed_other.extend(EVENT_SOURCE_ACTIONS.iter().map(|a| (*a).to_owned()));
            for action in EVENT_SOURCE_ACTIONS {
                let on: BTreeSet<String> = statements
                    .iter()
                    .filter(|s| s.actions.contains(*action))
                    .flat_map(|s| s.resources.iter().cloned())
                    .collect();
                if on != queues {
                    local.push(format!(
                        "{name}: {action} should be granted on its polled queue {queues:?} only, is on {on:?}"
                    ));
                }
            }
        }
        let granted_other: BTreeSet<String> = statements
            .iter()
            .flat_map(|s| s.actions.iter())
            .filter(|a| !a.starts_with("dynamodb:"))
            .cloned()
            .collect();
        for action in needed_other.difference(&granted_other) {
            local.push(format!(
                "{name}: {binary} calls {action} but its role does not allow it"
            ));
        }
        for action in granted_other.difference(&needed_other) {
            local.push(format!(
                "{name}: the role allows {action}, which {binary} never uses"
            ));
        }
        if !local.is_empty() {
            suggestions.push(format!(
                "{name} reaches {methods:?}; on the table it needs:\n{}",
                suggest(&needed)
            ));
        }
        problems.extend(local);
    }
    assert!(
        problems.is_empty(),
        "\n{}\n\nWhat the code needs:\n{}",
        problems.join("\n"),
        suggestions.join("\n")
    );
}

#[test]
fn no_role_writes_configuration_and_only_routing_writes_turns() {
    let t = template();
    let mut problems = Vec::new();
    for (name, _, f) in functions(&t) {
        let granted = granted_table_access(&name, &statements(f), &mut problems);
        for (prefix, allowed) in GUARDED_WRITES {
            for (action, key) in &granted {
                if WRITE_ACTIONS.contains(&action.as_str())
                    && !key.contains(':')
                    && may_touch(key, prefix)
                    && !allowed.contains(&name.as_str())
                {
                    problems.push(format!(
                        "{name}: {action} on {key} lets it write {prefix} items, which only {allowed:?} may"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The detail types each function publishes, from the table of docs/data-model.md ("produced
/// by"), which must name every event of `LeadEvent::name`. outbox-relay publishes whatever a
/// writer left in the outbox.
fn published_types() -> BTreeMap<String, BTreeSet<String>> {
    let names =
        std::fs::read_to_string(root().join("shared/domain/src/events.rs")).expect("events.rs");
    let start = names.find("pub fn name(").expect("LeadEvent::name");
    let all: BTreeSet<String> = names[start..]
        .split("=> \"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap_or(0)].to_owned())
        .take_while(|s| !s.is_empty())
        .collect();
    let doc = std::fs::read_to_string(root().join("docs/data-model.md")).expect("data-model.md");
    let binaries: Vec<String> = std::fs::read_dir(root().join("functions"))
        .expect("functions")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut documented = BTreeSet::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 {
            continue;
        }
        let ty = cells[1].trim_matches('`');
        if !all.contains(ty) {
            continue;
        }
        documented.insert(ty.to_owned());
        let by = cells[3];
        for b in &binaries {
            if by.contains(b.as_str()) {
                out.entry(b.clone()).or_default().insert(ty.to_owned());
            }
        }
    }
    assert_eq!(
        documented, all,
        "docs/data-model.md documents who produces each event"
    );
    out.insert("outbox-relay".into(), all);
    out
}

#[test]
fn put_events_is_limited_to_leadflow_and_the_types_each_function_publishes() {
    let t = template();
    let published = published_types();
    let mut problems = Vec::new();
    for (name, binary, f) in functions(&t) {
        for s in statements(f) {
            if !s.actions.contains("events:PutEvents") {
                continue;
            }
            if s.resources != BTreeSet::from(["${LeadBus.Arn}".to_owned()]) {
                problems.push(format!(
                    "{name}.{}: PutEvents on {:?}, not the lead bus",
                    s.sid, s.resources
                ));
            }
            let eq = &s.condition["StringEquals"];
            let source = strings(&eq["events:source"]);
            if source != BTreeSet::from([leadflow_domain::EVENT_SOURCE.to_owned()]) {
                problems.push(format!(
                    "{name}.{}: PutEvents needs an events:source condition of [{:?}], has {source:?}",
                    s.sid,
                    leadflow_domain::EVENT_SOURCE
                ));
            }
            let types = strings(&eq["events:detail-type"]);
            let expected = published.get(&binary).cloned().unwrap_or_default();
            if types != expected {
                problems.push(format!(
                    "{name}.{}: PutEvents needs an events:detail-type condition of {expected:?} (what {binary} publishes), has {types:?}",
                    s.sid
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The reader of sources: literals and comments do not count as code, `impl` blocks give their
/// methods a trait and a type, keys are read from `"pk"` values and helper arguments.
#[test]
fn the_source_reader_sees_code_not_literals() {
    let src = parse(
        r#"
// a comment with fn hidden() { .put_item() }
impl Port for DynamoStore {
    async fn visible(&self, key: &str) -> Result<(), E> {
        let text = "braces } and calls .delete_item() in a string";
        self.client().put_item().item("pk", s(format!("THING#{key}"))).send().await?;
        Ok(())
    }
}
#[cfg(test)]
mod tests { fn ignored() {} }
"#,
    );
    let found = fns(&src);
    assert_eq!(
        found.len(),
        1,
        "{:?}",
        found.iter().map(|f| &f.name).collect::<Vec<_>>()
    );
    let f = &found[0];
    assert_eq!(f.name, "visible");
    assert_eq!(f.owner_trait.as_deref(), Some("Port"));
    assert_eq!(f.owner_type.as_deref(), Some("DynamoStore"));
    let names: Vec<_> = calls(&src.code[f.body.clone()])
        .into_iter()
        .filter(|c| c.2 && c.3)
        .map(|c| c.0)
        .collect();
    assert!(names.contains(&"put_item".to_owned()), "{names:?}");
    assert!(!names.contains(&"delete_item".to_owned()), "{names:?}");

    assert!(admits("LEAD#*", "LEAD#*") && admits("ROUTING#*", "ROUTING#pool#*"));
    assert!(!admits("LEAD#*", "CONFIG") && !admits("CONFIG", "CONFIG#*"));
    assert!(
        may_touch("*", "CONFIG") && may_touch("CONF*", "CONFIG") && may_touch("CONFIG", "CONFIG")
    );
    assert!(!may_touch("LEAD#*", "CONFIG") && !may_touch("ROUTING#pool#*", "CONFIG"));
}
