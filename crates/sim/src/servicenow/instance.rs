//! The emulated instance's data: users, groups, `incident` records, `sys_journal_field`
//! entries, and the business rules and data policy that run on every write.
//!
//! Records are kept as raw string values (the database's view); what a client sees is
//! rendered per request ([`Instance::render`]) because `sysparm_display_value`,
//! `sysparm_exclude_reference_link` and `sysparm_fields` change the shape, not the data.
//!
//! Rules that a real instance applies and a client must cope with:
//! - `priority` is computed from `impact` × `urgency` (the default lookup matrix) and cannot
//!   be written; `active` follows `state`;
//! - `work_notes` / `comments` are journal fields: a write appends a `sys_journal_field` row,
//!   a read gives `""` (or, as display value, the whole history newest first);
//! - resolving or closing (state 6/7) needs `close_code` and `close_notes` (the default data
//!   policy: 403 `Data Policy Exception`); a closed or canceled incident is read-only for the
//!   integration and analyst roles (403 ACL exception) unless configured otherwise;
//! - a write that changes nothing is not saved: no `sys_updated_on`, no `sys_mod_count`, no
//!   business rule (so no webhook).

use super::query::{Query, Unknown};
use crate::world::hex_string;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// How a field is stored and shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Free text, numbers, dates: the display value is the value.
    Plain,
    /// A choice list: (value, label).
    Choice(&'static [(&'static str, &'static str)]),
    /// A reference to a row of this table: `{link, value}` on the wire.
    Reference(&'static str),
    /// `work_notes` / `comments`.
    Journal,
}

/// Whether a client may write the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Write {
    Yes,
    /// Set by the system (sys_* fields, computed fields): writes are ignored, as the instance
    /// ignores them.
    No,
}

pub(crate) const STATES: &[(&str, &str)] = &[
    ("1", "New"),
    ("2", "In Progress"),
    ("3", "On Hold"),
    ("4", "Awaiting Caller"),
    ("5", "Awaiting Evidence"),
    ("6", "Resolved"),
    ("7", "Closed"),
    ("8", "Canceled"),
];
const IMPACT: &[(&str, &str)] = &[("1", "1 - High"), ("2", "2 - Medium"), ("3", "3 - Low")];
const PRIORITY: &[(&str, &str)] = &[
    ("1", "1 - Critical"),
    ("2", "2 - High"),
    ("3", "3 - Moderate"),
    ("4", "4 - Low"),
    ("5", "5 - Planning"),
];
const CATEGORY: &[(&str, &str)] = &[
    ("inquiry", "Inquiry / Help"),
    ("software", "Software"),
    ("hardware", "Hardware"),
    ("network", "Network"),
    ("database", "Database"),
    ("security", "Security"),
];

/// The `incident` fields in the order they are rendered.
const INCIDENT: &[(&str, Kind, Write)] = &[
    ("sys_id", Kind::Plain, Write::No),
    ("number", Kind::Plain, Write::No),
    ("short_description", Kind::Plain, Write::Yes),
    ("description", Kind::Plain, Write::Yes),
    ("state", Kind::Choice(STATES), Write::Yes),
    ("impact", Kind::Choice(IMPACT), Write::Yes),
    ("urgency", Kind::Choice(IMPACT), Write::Yes),
    ("priority", Kind::Choice(PRIORITY), Write::No),
    ("category", Kind::Choice(CATEGORY), Write::Yes),
    ("caller_id", Kind::Reference("sys_user"), Write::Yes),
    ("opened_by", Kind::Reference("sys_user"), Write::Yes),
    (
        "assignment_group",
        Kind::Reference("sys_user_group"),
        Write::Yes,
    ),
    ("assigned_to", Kind::Reference("sys_user"), Write::Yes),
    ("close_code", Kind::Plain, Write::Yes),
    ("close_notes", Kind::Plain, Write::Yes),
    ("correlation_id", Kind::Plain, Write::Yes),
    ("correlation_display", Kind::Plain, Write::Yes),
    ("active", Kind::Plain, Write::No),
    ("opened_at", Kind::Plain, Write::Yes),
    ("resolved_at", Kind::Plain, Write::No),
    ("resolved_by", Kind::Reference("sys_user"), Write::No),
    ("closed_at", Kind::Plain, Write::No),
    ("closed_by", Kind::Reference("sys_user"), Write::No),
    ("work_notes", Kind::Journal, Write::Yes),
    ("comments", Kind::Journal, Write::Yes),
    ("sys_class_name", Kind::Plain, Write::No),
    ("sys_domain", Kind::Plain, Write::No),
    ("sys_domain_path", Kind::Plain, Write::No),
    ("sys_created_on", Kind::Plain, Write::No),
    ("sys_created_by", Kind::Plain, Write::No),
    ("sys_updated_on", Kind::Plain, Write::No),
    ("sys_updated_by", Kind::Plain, Write::No),
    ("sys_mod_count", Kind::Plain, Write::No),
];

/// The `sys_journal_field` fields (read-only through the API).
const JOURNAL: &[&str] = &[
    "sys_id",
    "element",
    "element_id",
    "name",
    "value",
    "sys_created_on",
    "sys_created_by",
];

/// Close codes of a current instance's default choice list (older ones included, since
/// upgraded instances keep them).
pub(crate) const DEFAULT_CLOSE_CODES: &[&str] = &[
    "Duplicate",
    "Known error",
    "No resolution provided",
    "Resolved by caller",
    "Resolved by change",
    "Resolved by problem",
    "Resolved by request",
    "Solution provided",
    "Workaround provided",
    "User error",
    "Solved (Work Around)",
    "Solved (Permanently)",
    "Solved Remotely (Work Around)",
    "Solved Remotely (Permanently)",
    "Not Solved (Not Reproducible)",
    "Not Solved (Too Costly)",
    "Closed/Resolved by Caller",
];

/// The tables the emulator knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Table {
    Incident,
    Journal,
}

impl Table {
    pub fn parse(name: &str) -> Option<Table> {
        match name {
            "incident" => Some(Table::Incident),
            "sys_journal_field" => Some(Table::Journal),
            _ => None,
        }
    }

    fn kind(self, field: &str) -> Option<Kind> {
        match self {
            Table::Incident => INCIDENT
                .iter()
                .find(|(f, _, _)| *f == field)
                .map(|(_, k, _)| *k),
            Table::Journal => JOURNAL.contains(&field).then_some(Kind::Plain),
        }
    }

    fn fields(self) -> Vec<&'static str> {
        match self {
            Table::Incident => INCIDENT.iter().map(|(f, _, _)| *f).collect(),
            Table::Journal => JOURNAL.to_vec(),
        }
    }
}

/// A person who can be referenced (and, with a password, log in).
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub sys_id: String,
    pub user_name: String,
    pub name: String,
    pub password: Option<String>,
}

/// An assignment group.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub sys_id: String,
    pub name: String,
}

/// One row: raw values by field name (every schema field present).
pub(crate) type Row = BTreeMap<&'static str, String>;

/// How a record is shown (`sysparm_display_value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Display {
    False,
    True,
    All,
}

/// What the client asked to see.
#[derive(Clone, Debug)]
pub(crate) struct View {
    pub display: Display,
    pub exclude_reference_link: bool,
    /// Empty: every field.
    pub fields: Vec<String>,
}

/// A refused write: status, message and detail of the error envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub message: String,
    pub detail: String,
}

impl Refusal {
    fn new(status: u16, message: &str, detail: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.to_string(),
            detail: detail.into(),
        }
    }
}

/// A journal entry as stored.
#[derive(Clone, Debug)]
pub(crate) struct JournalEntry {
    pub row: Row,
}

/// A committed change, for the webhook and the counters.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub operation: &'static str,
    pub record: Row,
    pub journal: Vec<Row>,
    /// Newest entry of each journal field after the change (value, or "").
    pub newest_work_note: Option<Row>,
    pub newest_comment: Option<Row>,
}

/// Behaviour switches of the instance (from `ServiceNowConfig`).
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    pub close_codes: Vec<String>,
    pub closed_read_only: bool,
    pub unknown: Unknown,
}

/// Records, people and rules of the instance.
pub(crate) struct Instance {
    pub rules: Rules,
    rng: ChaCha8Rng,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub incidents: Vec<Row>,
    by_id: HashMap<String, usize>,
    pub journal: Vec<JournalEntry>,
    next_number: u64,
}

/// The integration user (socbridge) and the analyst (tests acting as a person).
pub(crate) const INTEGRATION: usize = 0;
pub(crate) const ANALYST: usize = 1;

/// Priority from impact and urgency: ServiceNow's default lookup matrix.
pub(crate) fn priority(impact: &str, urgency: &str) -> &'static str {
    match (impact, urgency) {
        ("1", "1") => "1",
        ("1", "2") | ("2", "1") => "2",
        ("1", "3") | ("2", "2") | ("3", "1") => "3",
        ("2", "3") | ("3", "2") => "4",
        _ => "5",
    }
}

fn label(choices: &[(&str, &'static str)], v: &str) -> Option<&'static str> {
    choices.iter().find(|(c, _)| *c == v).map(|(_, l)| *l)
}

impl Instance {
    pub fn new(mut rng: ChaCha8Rng, rules: Rules) -> Instance {
        let mut user = |user_name: &str, name: &str, login: bool| User {
            sys_id: hex_string(&mut rng, 16),
            user_name: user_name.to_string(),
            name: name.to_string(),
            password: login.then(|| hex_string(&mut rng, 12)),
        };
        let users = vec![
            user("socbridge.integration", "socbridge Integration", true),
            user("soc.analyst", "SOC Analyst", true),
            user("admin", "System Administrator", false),
            user("abel.tuter", "Abel Tuter", false),
            user("beth.anglin", "Beth Anglin", false),
        ];
        let groups = ["SOC Tier 1", "SOC Tier 2", "Service Desk", "Network"]
            .iter()
            .map(|n| Group {
                sys_id: hex_string(&mut rng, 16),
                name: (*n).to_string(),
            })
            .collect();
        Instance {
            rules,
            rng,
            users,
            groups,
            incidents: Vec::new(),
            by_id: HashMap::new(),
            journal: Vec::new(),
            next_number: 10001,
        }
    }

    /// A fresh 32-hex sys_id (from the instance's seeded stream).
    pub fn fresh_id(&mut self) -> String {
        hex_string(&mut self.rng, 16)
    }

    /// The user who logs in with these credentials.
    pub fn login(&self, user_name: &str, password: &str) -> Option<usize> {
        self.users
            .iter()
            .position(|u| u.user_name == user_name && u.password.as_deref() == Some(password))
    }

    fn user_by_id(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.sys_id == id)
    }

    /// A reference value as written (a sys_id, a user name or a display name) → the sys_id.
    /// An unknown value is stored as given, as the instance stores a dangling sys_id.
    fn resolve_ref(&self, table: &str, v: &str) -> String {
        let v = v.trim();
        if v.is_empty() {
            return String::new();
        }
        let found = if table == "sys_user_group" {
            self.groups
                .iter()
                .find(|g| g.sys_id == v || g.name.eq_ignore_ascii_case(v))
                .map(|g| g.sys_id.clone())
        } else {
            self.users
                .iter()
                .find(|u| u.sys_id == v || u.user_name == v || u.name.eq_ignore_ascii_case(v))
                .map(|u| u.sys_id.clone())
        };
        found.unwrap_or_else(|| v.to_string())
    }

    fn ref_display(&self, table: &str, id: &str) -> String {
        if table == "sys_user_group" {
            self.groups
                .iter()
                .find(|g| g.sys_id == id)
                .map(|g| g.name.clone())
        } else {
            self.user_by_id(id).map(|u| u.name.clone())
        }
        .unwrap_or_default()
    }

    pub fn incident(&self, sys_id: &str) -> Option<&Row> {
        self.by_id.get(sys_id).map(|&i| &self.incidents[i])
    }

    /// Rows of a table matching a query, sorted by its ORDERBY keys (creation order
    /// otherwise, which is also the tie-break).
    pub fn select(&self, table: Table, q: &Query) -> Vec<&Row> {
        let rows: Box<dyn Iterator<Item = &Row>> = match table {
            Table::Incident => Box::new(self.incidents.iter()),
            Table::Journal => Box::new(self.journal.iter().map(|j| &j.row)),
        };
        let mut out: Vec<&Row> = rows
            .filter(|r| {
                let get = |f: &str| table.kind(f).and_then(|_| r.get(f).map(String::as_str));
                q.matches(&get, self.rules.unknown)
            })
            .collect();
        if !q.order.is_empty() {
            out.sort_by(|a, b| {
                let ga = |f: &str| table.kind(f).and_then(|_| a.get(f).map(String::as_str));
                let gb = |f: &str| table.kind(f).and_then(|_| b.get(f).map(String::as_str));
                q.compare(&ga, &gb)
            });
        }
        out
    }

    /// The journal history of one field of one record, as its display value: newest first,
    /// `"<when> - <name> (<Work notes|Additional comments>)\n<text>\n\n"` per entry.
    fn journal_display(&self, element_id: &str, element: &str) -> String {
        let heading = if element == "work_notes" {
            "Work notes"
        } else {
            "Additional comments"
        };
        let mut out = String::new();
        for e in self.journal.iter().rev().filter(|e| {
            e.row.get("element_id").map(String::as_str) == Some(element_id)
                && e.row.get("element").map(String::as_str) == Some(element)
        }) {
            let by = e.row.get("sys_created_by").cloned().unwrap_or_default();
            let name = self
                .users
                .iter()
                .find(|u| u.user_name == by)
                .map_or(by, |u| u.name.clone());
            out.push_str(&format!(
                "{} - {} ({heading})\n{}\n\n",
                e.row.get("sys_created_on").map_or("", String::as_str),
                name,
                e.row.get("value").map_or("", String::as_str)
            ));
        }
        out
    }

    /// A row as the client asked to see it. `base` is `http://host:port` for reference links.
    pub fn render(&self, table: Table, row: &Row, view: &View, base: &str) -> Map<String, Value> {
        let mut out = Map::new();
        let wanted: Vec<&'static str> = if view.fields.is_empty() {
            table.fields()
        } else {
            table
                .fields()
                .into_iter()
                .filter(|f| view.fields.iter().any(|w| w == f))
                .collect()
        };
        for f in wanted {
            let raw = row.get(f).cloned().unwrap_or_default();
            let kind = table.kind(f).unwrap_or(Kind::Plain);
            let v = match kind {
                Kind::Plain => match view.display {
                    Display::All => pair(raw.clone(), raw),
                    _ => Value::String(raw),
                },
                Kind::Choice(choices) => {
                    let shown = label(choices, &raw).map_or_else(|| raw.clone(), str::to_string);
                    match view.display {
                        Display::False => Value::String(raw),
                        Display::True => Value::String(shown),
                        Display::All => pair(shown, raw),
                    }
                }
                Kind::Journal => {
                    let sys_id = row.get("sys_id").map_or("", String::as_str);
                    match view.display {
                        Display::False => Value::String(String::new()),
                        Display::True => Value::String(self.journal_display(sys_id, f)),
                        Display::All => pair(self.journal_display(sys_id, f), String::new()),
                    }
                }
                Kind::Reference(target) => {
                    if raw.is_empty() {
                        match view.display {
                            Display::All => pair(String::new(), String::new()),
                            _ => Value::String(String::new()),
                        }
                    } else {
                        let link = format!("{base}/api/now/table/{target}/{raw}");
                        let shown = self.ref_display(target, &raw);
                        let mut m = Map::new();
                        match view.display {
                            Display::False => {
                                if view.exclude_reference_link {
                                    out.insert(f.to_string(), Value::String(raw));
                                    continue;
                                }
                                m.insert("link".into(), Value::String(link));
                                m.insert("value".into(), Value::String(raw));
                            }
                            Display::True => {
                                if view.exclude_reference_link {
                                    out.insert(f.to_string(), Value::String(shown));
                                    continue;
                                }
                                m.insert("display_value".into(), Value::String(shown));
                                m.insert("link".into(), Value::String(link));
                            }
                            Display::All => {
                                m.insert("display_value".into(), Value::String(shown));
                                m.insert("value".into(), Value::String(raw));
                                if !view.exclude_reference_link {
                                    m.insert("link".into(), Value::String(link));
                                }
                            }
                        }
                        Value::Object(m)
                    }
                }
            };
            out.insert(f.to_string(), v);
        }
        out
    }

    /// Reads a request body into (field, value) writes: strings as they are, numbers and
    /// booleans as their text (the instance accepts them), null as "". Unknown fields and
    /// system fields are ignored, as the instance ignores them.
    fn writes(body: &Map<String, Value>) -> Vec<(&'static str, Kind, String)> {
        let mut out = Vec::new();
        for (k, v) in body {
            let Some(&(f, kind, Write::Yes)) = INCIDENT.iter().find(|(f, _, _)| f == k) else {
                continue;
            };
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                // A reference written back as the `{link, value}` the API gave out.
                Value::Object(o) => match o.get("value") {
                    Some(Value::String(s)) => s.clone(),
                    _ => v.to_string(),
                },
                Value::Array(_) => v.to_string(),
            };
            out.push((f, kind, text));
        }
        out
    }

    /// Applies writes to `row` (a copy), checking choice values. Journal texts are returned
    /// apart: they are not stored on the record.
    fn apply(
        &self,
        row: &mut Row,
        writes: Vec<(&'static str, Kind, String)>,
    ) -> Result<Vec<(&'static str, String)>, Refusal> {
        let mut journal = Vec::new();
        for (f, kind, v) in writes {
            match kind {
                Kind::Journal => {
                    if !v.trim().is_empty() {
                        journal.push((f, v));
                    }
                }
                Kind::Reference(table) => {
                    row.insert(f, self.resolve_ref(table, &v));
                }
                Kind::Choice(choices) if f != "category" => {
                    let v = v.trim().to_string();
                    if !v.is_empty() && label(choices, &v).is_none() {
                        let allowed: Vec<String> =
                            choices.iter().map(|(c, l)| format!("{c} ({l})")).collect();
                        return Err(Refusal::new(
                            400,
                            "Invalid value",
                            format!(
                                "field '{f}': '{v}' is not one of its choices: {}",
                                allowed.join(", ")
                            ),
                        ));
                    }
                    row.insert(f, v);
                }
                _ => {
                    row.insert(f, v);
                }
            }
        }
        Ok(journal)
    }

    /// Business rules after the client's values are in: defaults, computed fields, the close
    /// data policy, resolution/closure stamps.
    fn derive(
        &self,
        old_state: &str,
        row: &mut Row,
        user: &User,
        now: &str,
    ) -> Result<(), Refusal> {
        for (f, default) in [("state", "1"), ("impact", "3"), ("urgency", "3")] {
            if row.get(f).is_none_or(String::is_empty) {
                row.insert(f, default.to_string());
            }
        }
        let state = row.get("state").cloned().unwrap_or_default();
        let p = priority(
            row.get("impact").map_or("3", String::as_str),
            row.get("urgency").map_or("3", String::as_str),
        );
        row.insert("priority", p.to_string());
        let closing = state == "6" || state == "7";
        if closing {
            let mut missing = Vec::new();
            if row.get("close_code").is_none_or(|v| v.trim().is_empty()) {
                missing.push("Resolution code");
            }
            if row.get("close_notes").is_none_or(|v| v.trim().is_empty()) {
                missing.push("Resolution notes");
            }
            if !missing.is_empty() {
                return Err(Refusal::new(
                    403,
                    "Operation Failed",
                    format!(
                        "Data Policy Exception: \n\tThe following fields are mandatory: {}\n",
                        missing.join(", ")
                    ),
                ));
            }
        }
        let code = row.get("close_code").cloned().unwrap_or_default();
        if !code.is_empty()
            && !self.rules.close_codes.is_empty()
            && !self.rules.close_codes.contains(&code)
        {
            return Err(Refusal::new(
                403,
                "Operation Failed",
                format!(
                    "Data Policy Exception: \n\tResolution code '{code}' is not a valid choice: {}\n",
                    self.rules.close_codes.join(", ")
                ),
            ));
        }
        row.insert(
            "active",
            if state == "7" || state == "8" {
                "false"
            } else {
                "true"
            }
            .to_string(),
        );
        let was_done = matches!(old_state, "6" | "7" | "8");
        if closing && row.get("resolved_at").is_none_or(String::is_empty) {
            row.insert("resolved_at", now.to_string());
            row.insert("resolved_by", user.sys_id.clone());
        }
        if (state == "7" || state == "8") && row.get("closed_at").is_none_or(String::is_empty) {
            row.insert("closed_at", now.to_string());
            row.insert("closed_by", user.sys_id.clone());
        }
        if was_done && !matches!(state.as_str(), "6" | "7" | "8") {
            // Reopened: the resolution stamps go, the resolution text stays.
            for f in ["resolved_at", "resolved_by", "closed_at", "closed_by"] {
                row.insert(f, String::new());
            }
        }
        Ok(())
    }

    fn append_journal(
        &mut self,
        record: &Row,
        entries: Vec<(&'static str, String)>,
        user: &str,
        now: &str,
    ) -> Vec<Row> {
        let mut out = Vec::new();
        for (element, value) in entries {
            let mut row = Row::new();
            row.insert("sys_id", self.fresh_id());
            row.insert("element", element.to_string());
            row.insert(
                "element_id",
                record.get("sys_id").cloned().unwrap_or_default(),
            );
            row.insert("name", "incident".to_string());
            row.insert("value", value);
            row.insert("sys_created_on", now.to_string());
            row.insert("sys_created_by", user.to_string());
            self.journal.push(JournalEntry { row: row.clone() });
            out.push(row);
        }
        out
    }

    fn newest(&self, sys_id: &str, element: &str) -> Option<Row> {
        self.journal
            .iter()
            .rev()
            .find(|e| {
                e.row.get("element_id").map(String::as_str) == Some(sys_id)
                    && e.row.get("element").map(String::as_str) == Some(element)
            })
            .map(|e| e.row.clone())
    }

    fn change(&self, operation: &'static str, record: Row, journal: Vec<Row>) -> Change {
        let id = record.get("sys_id").cloned().unwrap_or_default();
        Change {
            operation,
            newest_work_note: self.newest(&id, "work_notes"),
            newest_comment: self.newest(&id, "comments"),
            record,
            journal,
        }
    }

    /// `POST /table/incident` as `user`, at `now`.
    pub fn insert(
        &mut self,
        user: usize,
        body: &Map<String, Value>,
        now: &str,
    ) -> Result<Change, Refusal> {
        let u = self.users[user].clone();
        let mut row: Row = INCIDENT
            .iter()
            .map(|(f, _, _)| (*f, String::new()))
            .collect();
        let journal = self.apply(&mut row, Self::writes(body))?;
        self.derive("", &mut row, &u, now)?;
        let sys_id = self.fresh_id();
        row.insert("sys_id", sys_id.clone());
        row.insert("number", format!("INC{:07}", self.next_number));
        self.next_number += 1;
        if row.get("opened_at").is_none_or(String::is_empty) {
            row.insert("opened_at", now.to_string());
        }
        if row.get("opened_by").is_none_or(String::is_empty) {
            row.insert("opened_by", u.sys_id.clone());
        }
        row.insert("sys_class_name", "incident".to_string());
        row.insert("sys_domain", "global".to_string());
        row.insert("sys_domain_path", "/".to_string());
        row.insert("sys_created_on", now.to_string());
        row.insert("sys_created_by", u.user_name.clone());
        row.insert("sys_updated_on", now.to_string());
        row.insert("sys_updated_by", u.user_name.clone());
        row.insert("sys_mod_count", "0".to_string());
        let entries = self.append_journal(&row, journal, &u.user_name, now);
        self.by_id.insert(sys_id, self.incidents.len());
        self.incidents.push(row.clone());
        Ok(self.change("insert", row, entries))
    }

    /// `PATCH`/`PUT /table/incident/{sys_id}` as `user`: `Ok(None)` when nothing changed (the
    /// record is not saved), `Err` 404 when there is no such record.
    pub fn update(
        &mut self,
        user: usize,
        sys_id: &str,
        body: &Map<String, Value>,
        now: &str,
    ) -> Result<Option<Change>, Refusal> {
        let u = self.users[user].clone();
        let Some(&at) = self.by_id.get(sys_id) else {
            return Err(no_record());
        };
        let old = self.incidents[at].clone();
        let old_state = old.get("state").cloned().unwrap_or_default();
        let writes = Self::writes(body);
        if self.rules.closed_read_only
            && matches!(old_state.as_str(), "7" | "8")
            && !writes.is_empty()
        {
            return Err(Refusal::new(
                403,
                "Operation Failed",
                "ACL Exception Update Failed due to security constraints",
            ));
        }
        let mut row = old.clone();
        let journal = self.apply(&mut row, writes)?;
        self.derive(&old_state, &mut row, &u, now)?;
        if row == old && journal.is_empty() {
            return Ok(None);
        }
        let count = old
            .get("sys_mod_count")
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0);
        row.insert("sys_mod_count", (count + 1).to_string());
        row.insert("sys_updated_on", now.to_string());
        row.insert("sys_updated_by", u.user_name.clone());
        let entries = self.append_journal(&row, journal, &u.user_name, now);
        self.incidents[at] = row.clone();
        Ok(Some(self.change("update", row, entries)))
    }

    /// `DELETE /table/incident/{sys_id}`: the record and its journal go.
    pub fn delete(&mut self, sys_id: &str) -> Result<Row, Refusal> {
        let Some(at) = self.by_id.remove(sys_id) else {
            return Err(no_record());
        };
        let row = self.incidents.remove(at);
        for i in self.by_id.values_mut() {
            if *i > at {
                *i -= 1;
            }
        }
        self.journal
            .retain(|e| e.row.get("element_id").map(String::as_str) != Some(sys_id));
        Ok(row)
    }
}

/// The instance's 404.
pub(crate) fn no_record() -> Refusal {
    Refusal::new(
        404,
        "No Record found",
        "Record doesn't exist or ACL restricts the record retrieval",
    )
}

fn pair(display: String, value: String) -> Value {
    let mut m = Map::new();
    m.insert("display_value".into(), Value::String(display));
    m.insert("value".into(), Value::String(value));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn instance() -> Instance {
        Instance::new(
            ChaCha8Rng::seed_from_u64(1),
            Rules {
                close_codes: DEFAULT_CLOSE_CODES.iter().map(|s| s.to_string()).collect(),
                closed_read_only: true,
                unknown: Unknown::Ignore,
            },
        )
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn priority_matrix() {
        assert_eq!(priority("1", "1"), "1");
        assert_eq!(priority("2", "1"), "2");
        assert_eq!(priority("2", "2"), "3");
        assert_eq!(priority("3", "2"), "4");
        assert_eq!(priority("3", "3"), "5");
    }

    #[test]
    fn rules_on_insert_and_update() {
        let mut i = instance();
        let c = i
            .insert(
                INTEGRATION,
                &body(
                    serde_json::json!({"short_description": "x", "impact": 1, "urgency": "2",
                    "priority": "5", "work_notes": "first", "no_such": "y"}),
                ),
                "2024-01-01 00:00:00",
            )
            .unwrap();
        let r = &c.record;
        assert_eq!(r["priority"], "2", "computed, not written");
        assert_eq!(r["state"], "1");
        assert_eq!(r["active"], "true");
        assert_eq!(r["number"], "INC0010001");
        assert_eq!(r["sys_id"].len(), 32);
        assert_eq!(r["sys_created_by"], "socbridge.integration");
        assert_eq!(c.journal.len(), 1);
        let id = r["sys_id"].clone();
        let refused = i
            .update(ANALYST, &id, &body(serde_json::json!({"state": "6"})), "t")
            .unwrap_err();
        assert_eq!(refused.status, 403);
        assert!(refused.detail.contains("Resolution code, Resolution notes"));
        assert_eq!(i.incident(&id).unwrap()["state"], "1", "nothing saved");
        assert!(
            i.update(
                ANALYST,
                &id,
                &body(serde_json::json!({"short_description": "x"})),
                "t"
            )
            .unwrap()
            .is_none(),
            "no change, no save"
        );
        let bad = i
            .update(ANALYST, &id, &body(serde_json::json!({"state": "9"})), "t")
            .unwrap_err();
        assert_eq!(bad.status, 400);
        let c = i
            .update(
                ANALYST,
                &id,
                &body(
                    serde_json::json!({"state": "7", "close_code": "Solution provided",
                    "close_notes": "done"}),
                ),
                "2024-01-01 00:00:05",
            )
            .unwrap()
            .unwrap();
        assert_eq!(c.record["active"], "false");
        assert_eq!(c.record["closed_at"], "2024-01-01 00:00:05");
        assert_eq!(c.record["resolved_at"], "2024-01-01 00:00:05");
        assert_eq!(c.record["sys_updated_by"], "soc.analyst");
        assert_eq!(c.record["sys_mod_count"], "1");
        let acl = i
            .update(
                ANALYST,
                &id,
                &body(serde_json::json!({"work_notes": "late"})),
                "t",
            )
            .unwrap_err();
        assert!(acl.detail.contains("ACL"));
    }
}
