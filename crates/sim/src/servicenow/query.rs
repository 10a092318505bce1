//! ServiceNow encoded queries (`sysparm_query`): parsing and evaluation against a row of raw
//! string values.
//!
//! Grammar, as the instance reads it: terms separated by `^`; a term starting with `OR`
//! (written `^OR`) joins the previous term in an OR group; `^NQ` starts a new query whose rows
//! are added to the first's; `ORDERBYf` / `ORDERBYDESCf` terms sort. A literal `^` inside a
//! value is written `^^`. Comparisons follow the instance's database: text comparisons ignore
//! case, and `<`/`>` compare numbers as numbers when both sides are integers (so `state<6`
//! does not sort "10" before "6") and text otherwise, which orders the `YYYY-MM-DD HH:MM:SS`
//! times correctly.
//!
//! Why the emulator is strict where it is: a term with no operator at all is a client bug
//! (400 naming `sysparm_query`), but a term on a field the table does not have is dropped
//! silently, exactly as a real instance does unless `glide.invalid_query.returns_no_rows` is
//! set (see [`Unknown`]): a client that misspells a field sees more rows, not an error.

use std::cmp::Ordering;

/// What a query term does with a field the table lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unknown {
    /// The term is dropped (the instance default).
    Ignore,
    /// The whole query matches nothing (`glide.invalid_query.returns_no_rows=true`).
    NoRows,
}

/// A comparison operator of a term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Like,
    NotLike,
    StartsWith,
    EndsWith,
    In,
    NotIn,
    IsEmpty,
    IsNotEmpty,
    Anything,
}

/// Operators in the order they are tried at the end of a field name: longer spellings before
/// their prefixes (`>=` before `>`, `NOT IN` before `NOTLIKE`...).
const OPS: [(&str, Op); 16] = [
    ("ISNOTEMPTY", Op::IsNotEmpty),
    ("ISEMPTY", Op::IsEmpty),
    ("ANYTHING", Op::Anything),
    ("NOT IN", Op::NotIn),
    ("NOT LIKE", Op::NotLike),
    ("NOTLIKE", Op::NotLike),
    ("STARTSWITH", Op::StartsWith),
    ("ENDSWITH", Op::EndsWith),
    ("LIKE", Op::Like),
    ("IN", Op::In),
    ("!=", Op::Ne),
    (">=", Op::Ge),
    ("<=", Op::Le),
    ("=", Op::Eq),
    (">", Op::Gt),
    ("<", Op::Lt),
];

/// One `field OP value` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Term {
    pub field: String,
    pub op: Op,
    pub value: String,
}

/// A sort key from `ORDERBY` / `ORDERBYDESC`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OrderBy {
    pub field: String,
    pub descending: bool,
}

/// A parsed query: `groups` are ANDed, the terms inside one group ORed; `alternatives` are the
/// `^NQ` queries whose rows are added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Query {
    pub groups: Vec<Vec<Term>>,
    pub alternatives: Vec<Query>,
    pub order: Vec<OrderBy>,
}

/// Why a query could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum QueryError {
    #[error(
        "sysparm_query term '{0}' has no operator (expected field=value, field!=value, fieldLIKEvalue, ...)"
    )]
    NoOperator(String),
    #[error("sysparm_query term '{0}' has no field name before its operator")]
    NoField(String),
    #[error("sysparm_query term '{0}' starts with OR but nothing precedes it")]
    DanglingOr(String),
    #[error("sysparm_query term '{0}' names no field to order by")]
    EmptyOrderBy(String),
}

/// Splits at single `^`; `^^` is a literal `^`.
fn split_terms(q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = q.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '^' {
            if chars.peek() == Some(&'^') {
                chars.next();
                cur.push('^');
            } else {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// `javascript:gs.dateGenerate('2024-01-31','10:00:00')` (what list filters put into queries)
/// is the date-time it names; any other value is itself.
fn literal(value: &str) -> String {
    let v = value.trim();
    if let Some(args) = v
        .strip_prefix("javascript:gs.dateGenerate(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let parts: Vec<&str> = args
            .split(',')
            .map(|p| p.trim().trim_matches(['\'', '"']))
            .collect();
        if let [date, time] = parts.as_slice() {
            let time = match *time {
                "start" => "00:00:00",
                "end" => "23:59:59",
                t => t,
            };
            return format!("{date} {time}");
        }
    }
    value.to_string()
}

fn parse_term(raw: &str) -> Result<Term, QueryError> {
    let end = raw
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'))
        .unwrap_or(raw.len());
    let (field, rest) = raw.split_at(end);
    let Some(&(spelling, op)) = OPS.iter().find(|(s, _)| rest.starts_with(s)) else {
        return Err(QueryError::NoOperator(raw.to_string()));
    };
    if field.is_empty() {
        return Err(QueryError::NoField(raw.to_string()));
    }
    Ok(Term {
        field: field.to_string(),
        op,
        value: literal(&rest[spelling.len()..]),
    })
}

impl Query {
    /// Parses an encoded query; an empty string matches everything.
    pub fn parse(q: &str) -> Result<Query, QueryError> {
        let mut queries = vec![Query::default()];
        for raw in split_terms(q) {
            if raw.is_empty() {
                continue;
            }
            if raw == "NQ" || raw.starts_with("NQ") && raw[2..].starts_with(char::is_lowercase) {
                queries.push(Query::default());
                let rest = &raw[2..];
                if rest.is_empty() {
                    continue;
                }
                let term = parse_term(rest)?;
                let last = queries.last_mut().expect("pushed above");
                last.groups.push(vec![term]);
                continue;
            }
            let cur = queries.last_mut().expect("never empty");
            if let Some(field) = raw.strip_prefix("ORDERBYDESC") {
                if field.is_empty() {
                    return Err(QueryError::EmptyOrderBy(raw.clone()));
                }
                cur.order.push(OrderBy {
                    field: field.to_string(),
                    descending: true,
                });
            } else if let Some(field) = raw.strip_prefix("ORDERBY") {
                if field.is_empty() {
                    return Err(QueryError::EmptyOrderBy(raw.clone()));
                }
                cur.order.push(OrderBy {
                    field: field.to_string(),
                    descending: false,
                });
            } else if let Some(rest) = raw.strip_prefix("OR") {
                let term = parse_term(rest)?;
                match cur.groups.last_mut() {
                    Some(g) => g.push(term),
                    None => return Err(QueryError::DanglingOr(raw.clone())),
                }
            } else {
                cur.groups.push(vec![parse_term(&raw)?]);
            }
        }
        let mut first = queries.remove(0);
        // Sorting is one for the whole answer: the instance takes ORDERBY from any part.
        for q in &mut queries {
            first.order.append(&mut q.order);
        }
        first.alternatives = queries;
        Ok(first)
    }

    /// Whether a row matches. `get` gives a field's raw value, or `None` when the table has no
    /// such field.
    pub fn matches<'a>(&self, get: &impl Fn(&str) -> Option<&'a str>, unknown: Unknown) -> bool {
        self.matches_own(get, unknown)
            || self
                .alternatives
                .iter()
                .any(|q| q.matches_own(get, unknown))
    }

    fn matches_own<'a>(&self, get: &impl Fn(&str) -> Option<&'a str>, unknown: Unknown) -> bool {
        self.groups.iter().all(|group| {
            let mut any_known = false;
            let mut hit = false;
            for t in group {
                match get(&t.field) {
                    None if unknown == Unknown::NoRows => return false,
                    None => {}
                    Some(v) => {
                        any_known = true;
                        hit = hit || t.matches(v);
                    }
                }
            }
            // A group made only of ignored terms constrains nothing.
            hit || !any_known
        })
    }

    /// Compares two rows by the ORDERBY keys (fields the table lacks are skipped).
    pub fn compare<'a>(
        &self,
        a: &impl Fn(&str) -> Option<&'a str>,
        b: &impl Fn(&str) -> Option<&'a str>,
    ) -> Ordering {
        for o in &self.order {
            let (Some(x), Some(y)) = (a(&o.field), b(&o.field)) else {
                continue;
            };
            let ord = compare_values(x, y);
            let ord = if o.descending { ord.reverse() } else { ord };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }
}

/// Numbers as numbers when both are integers, text otherwise (case-insensitive).
pub(crate) fn compare_values(a: &str, b: &str) -> Ordering {
    match (a.trim().parse::<i64>(), b.trim().parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.to_lowercase().cmp(&b.to_lowercase()),
    }
}

impl Term {
    fn matches(&self, v: &str) -> bool {
        let lv = v.to_lowercase();
        let want = self.value.to_lowercase();
        match self.op {
            Op::Eq => lv == want,
            Op::Ne => lv != want,
            Op::Gt => !v.is_empty() && compare_values(v, &self.value) == Ordering::Greater,
            Op::Ge => !v.is_empty() && compare_values(v, &self.value) != Ordering::Less,
            Op::Lt => !v.is_empty() && compare_values(v, &self.value) == Ordering::Less,
            Op::Le => !v.is_empty() && compare_values(v, &self.value) != Ordering::Greater,
            Op::Like => lv.contains(&want),
            Op::NotLike => !lv.contains(&want),
            Op::StartsWith => lv.starts_with(&want),
            Op::EndsWith => lv.ends_with(&want),
            Op::In => want.split(',').any(|w| w.trim() == lv),
            Op::NotIn => !want.split(',').any(|w| w.trim() == lv),
            Op::IsEmpty => v.is_empty(),
            Op::IsNotEmpty => !v.is_empty(),
            Op::Anything => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn row(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    fn m(q: &str, r: &HashMap<&'static str, &'static str>) -> bool {
        let get = |f: &str| r.get(f).copied();
        Query::parse(q).unwrap().matches(&get, Unknown::Ignore)
    }

    #[test]
    fn operators() {
        let r = row(&[
            ("state", "2"),
            ("short_description", "Malware on WIN-ACME-0001"),
            ("correlation_id", "acme:42"),
            ("close_code", ""),
            ("sys_updated_on", "2024-05-01 10:00:00"),
        ]);
        assert!(m("state=2", &r));
        assert!(!m("state!=2", &r));
        assert!(m("state<6", &r) && m("state<=2", &r) && m("state>=2", &r));
        assert!(!m("state>2", &r));
        assert!(m("state<10", &r), "numbers compare as numbers");
        assert!(m("short_descriptionLIKEmalware", &r), "LIKE ignores case");
        assert!(m("short_descriptionNOT LIKEphish", &r));
        assert!(m("short_descriptionSTARTSWITHMalware", &r));
        assert!(m("short_descriptionENDSWITH0001", &r));
        assert!(m("stateIN1,2,3", &r) && !m("stateNOT IN1,2,3", &r));
        assert!(m("close_codeISEMPTY", &r) && !m("close_codeISNOTEMPTY", &r));
        assert!(m("sys_updated_on>2024-05-01 09:59:59", &r));
        assert!(!m("sys_updated_on>2024-05-01 10:00:00", &r));
        assert!(m(
            "sys_updated_on>=javascript:gs.dateGenerate('2024-05-01','10:00:00')",
            &r
        ));
        assert!(!m("close_code>", &r), "an empty value is never greater");
    }

    #[test]
    fn and_or_nq_and_unknown_fields() {
        let r = row(&[("state", "2"), ("element", "comments")]);
        assert!(m("element=work_notes^ORelement=comments", &r));
        assert!(!m("element=work_notes^ORelement=x^state=2", &r));
        assert!(m("state=2^element=comments", &r));
        assert!(!m("state=3^element=comments", &r));
        assert!(m("state=3^NQelement=comments", &r));
        assert!(
            m("no_such_field=1^state=2", &r),
            "unknown fields are ignored"
        );
        let get = |f: &str| r.get(f).copied();
        assert!(
            !Query::parse("no_such_field=1")
                .unwrap()
                .matches(&get, Unknown::NoRows)
        );
        assert!(m("", &r));
    }

    #[test]
    fn order_by_and_escapes() {
        let q = Query::parse("active=true^ORDERBYnumber^ORDERBYDESCsys_updated_on").unwrap();
        assert_eq!(
            q.order,
            vec![
                OrderBy {
                    field: "number".into(),
                    descending: false
                },
                OrderBy {
                    field: "sys_updated_on".into(),
                    descending: true
                }
            ]
        );
        let q = Query::parse("short_description=a^^b").unwrap();
        assert_eq!(q.groups[0][0].value, "a^b");
        let a = row(&[("n", "9")]);
        let b = row(&[("n", "10")]);
        let q = Query::parse("ORDERBYn").unwrap();
        assert_eq!(
            q.compare(&|f| a.get(f).copied(), &|f| b.get(f).copied()),
            Ordering::Less
        );
    }

    #[test]
    fn errors_name_the_term() {
        assert_eq!(
            Query::parse("state=1^garbage"),
            Err(QueryError::NoOperator("garbage".into()))
        );
        assert_eq!(Query::parse("=1"), Err(QueryError::NoField("=1".into())));
        assert_eq!(
            Query::parse("ORstate=1"),
            Err(QueryError::DanglingOr("ORstate=1".into()))
        );
        assert!(Query::parse("ORDERBY").is_err());
        assert!(
            QueryError::NoOperator("x".into())
                .to_string()
                .contains("sysparm_query")
        );
    }
}
