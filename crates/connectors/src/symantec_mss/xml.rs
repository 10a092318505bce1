//! A small, tolerant XML tree for SOAP answers: elements by local name (any prefix, any or no
//! namespace, `xmlns=""` alike), their unescaped text, and their byte span in the answer so an
//! incident's XML can be kept verbatim.
//!
//! Built with quick-xml's pull reader, iteratively (no recursion while reading) and with a
//! nesting limit, so hostile input can neither overflow the stack nor nest without bound.

use quick_xml::Reader;
use quick_xml::events::Event;

/// Deeper than any SOAP answer of the service (about ten levels).
pub(crate) const MAX_DEPTH: usize = 64;

/// One element.
#[derive(Debug, Default)]
pub(crate) struct Node {
    /// The local name (prefix removed).
    pub name: String,
    /// The element's own character data, unescaped (CDATA included), untrimmed.
    pub text: String,
    pub children: Vec<Node>,
    /// Byte offsets of the element (start tag to end tag, inclusive) in the parsed text.
    pub start: usize,
    pub end: usize,
}

/// Why a text is not well-formed XML, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XmlError {
    /// The innermost open element when the error was found (`document` before the root).
    pub element: String,
    pub detail: String,
}

impl Node {
    /// The first child with this local name (ASCII case-insensitive: `WorkFlowDetail` and
    /// `WorkflowDetail` alike).
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Every child with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children
            .iter()
            .filter(move |c| c.name.eq_ignore_ascii_case(name))
    }

    /// The trimmed text of the first child of this name; an empty element (or a missing one)
    /// is `None`.
    pub fn text_of(&self, name: &str) -> Option<String> {
        self.child(name).and_then(Node::value)
    }

    /// This element's trimmed text, `None` when empty.
    pub fn value(&self) -> Option<String> {
        let t = self.text.trim();
        (!t.is_empty()).then(|| t.to_string())
    }

    /// The outermost descendants (self excluded) with this local name, in document order; a
    /// match's own descendants are not searched.
    pub fn find_all<'a>(&'a self, name: &str) -> Vec<&'a Node> {
        let mut out = Vec::new();
        let mut stack: Vec<&Node> = self.children.iter().rev().collect();
        while let Some(n) = stack.pop() {
            if n.name.eq_ignore_ascii_case(name) {
                out.push(n);
            } else {
                stack.extend(n.children.iter().rev());
            }
        }
        out
    }

    /// The trimmed, non-empty texts of every leaf element below (or of this element itself
    /// when it has no children).
    pub fn leaf_texts(&self) -> Vec<String> {
        if self.children.is_empty() {
            return self.value().into_iter().collect();
        }
        let mut out = Vec::new();
        let mut stack: Vec<&Node> = self.children.iter().rev().collect();
        while let Some(n) = stack.pop() {
            if n.children.is_empty() {
                out.extend(n.value());
            } else {
                stack.extend(n.children.iter().rev());
            }
        }
        out
    }

    /// All the character data below, concatenated (for fault details).
    pub fn all_text(&self) -> String {
        let mut out = String::new();
        let mut stack = vec![self];
        while let Some(n) = stack.pop() {
            let t = n.text.trim();
            if !t.is_empty() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(t);
            }
            stack.extend(n.children.iter().rev());
        }
        out
    }
}

/// The text a tree was parsed from, and the answer as received when they differ (odd entities
/// removed before parsing): an element's raw XML is always taken from the answer as received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    original: &'a str,
    /// `(offset in the parsed text where bytes were removed, bytes removed up to there)`.
    removed: &'a [(usize, usize)],
}

impl<'a> Source<'a> {
    /// A text parsed as it is.
    pub fn plain(text: &'a str) -> Self {
        Source {
            original: text,
            removed: &[],
        }
    }

    /// The parsed text of `stripped`, mapped back to `original`.
    pub fn stripped(original: &'a str, stripped: &'a Stripped) -> Self {
        Source {
            original,
            removed: &stripped.removed,
        }
    }

    /// The element's exact XML in the answer as received.
    pub fn raw(&self, node: &Node) -> &'a str {
        // Bytes removed right before an element belong outside it; right after its end too.
        let shift = |pos: usize, inclusive: bool| {
            self.removed
                .iter()
                .take_while(|(at, _)| if inclusive { *at <= pos } else { *at < pos })
                .last()
                .map_or(pos, |(_, total)| pos + total)
        };
        let start = shift(node.start, true);
        let end = shift(node.end, false);
        self.original.get(start..end).unwrap_or_default()
    }
}

/// Parses a whole document and returns its root element.
pub(crate) fn parse(src: &str) -> Result<Node, XmlError> {
    let mut reader = Reader::from_str(src);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let current = |stack: &[Node]| {
        stack
            .last()
            .map_or_else(|| "document".to_string(), |n| n.name.clone())
    };
    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader.read_event().map_err(|e| XmlError {
            element: current(&stack),
            detail: e.to_string(),
        })?;
        let after = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        match event {
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError {
                        element: current(&stack),
                        detail: format!("elements nest deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push(Node {
                    name: local_name(e.local_name().as_ref()),
                    start: before,
                    ..Node::default()
                });
            }
            Event::Empty(e) => {
                let node = Node {
                    name: local_name(e.local_name().as_ref()),
                    start: before,
                    end: after,
                    ..Node::default()
                };
                if attach(&mut stack, &mut root, node) {
                    return Ok(root.unwrap_or_default());
                }
            }
            Event::End(_) => {
                let Some(mut node) = stack.pop() else {
                    return Err(XmlError {
                        element: "document".into(),
                        detail: "an end tag closes nothing".into(),
                    });
                };
                node.end = after;
                if attach(&mut stack, &mut root, node) {
                    return Ok(root.unwrap_or_default());
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let text = t.unescape().map_err(|e| XmlError {
                        element: top.name.clone(),
                        detail: e.to_string(),
                    })?;
                    top.text.push_str(&text);
                } else if root.is_none() && !t.iter().all(u8::is_ascii_whitespace) {
                    return Err(XmlError {
                        element: "document".into(),
                        detail: "text before the root element".into(),
                    });
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Event::Eof => {
                return match (stack.last(), root) {
                    (Some(open), _) => Err(XmlError {
                        element: open.name.clone(),
                        detail: "the answer ends before this element is closed".into(),
                    }),
                    (None, Some(r)) => Ok(r),
                    (None, None) => Err(XmlError {
                        element: "document".into(),
                        detail: "no element at all".into(),
                    }),
                };
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// Hangs a finished element on its parent; `true` when it was the root (parsing stops there:
/// whatever trails the root element is ignored).
fn attach(stack: &mut [Node], root: &mut Option<Node>, node: Node) -> bool {
    match stack.last_mut() {
        Some(parent) => {
            parent.children.push(node);
            false
        }
        None => {
            *root = Some(node);
            true
        }
    }
}

fn local_name(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A text with its odd entity references removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stripped {
    pub text: String,
    /// `(offset in `text` where a reference was removed, bytes removed up to there)`.
    removed: Vec<(usize, usize)>,
}

/// Removes entity references XML does not know (`&nbsp;`, `&#xZZ;`...), the odd entities some
/// real answers carry: a reference of one to six non-space characters, as the XSOAR client
/// strips them before parsing again. The five predefined entities and valid character
/// references stay. `None` when there is nothing to remove.
pub(crate) fn strip_odd_entities(src: &str) -> Option<Stripped> {
    let mut out = String::with_capacity(src.len());
    let mut removed = Vec::new();
    let mut total = 0usize;
    let mut rest = src;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let name_len = after
            .char_indices()
            .take(7)
            .find(|(_, c)| *c == ';' || c.is_whitespace() || *c == '&' || *c == '<')
            .filter(|(j, c)| *c == ';' && *j >= 1)
            .map(|(j, _)| j);
        match name_len {
            Some(len) if !known_entity(&after[..len]) => {
                total += len + 2;
                removed.push((out.len(), total));
                rest = &after[len + 1..];
            }
            Some(len) => {
                out.push('&');
                out.push_str(&after[..=len]);
                rest = &after[len + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    (!removed.is_empty()).then_some(Stripped { text: out, removed })
}

fn known_entity(name: &str) -> bool {
    if matches!(name, "lt" | "gt" | "amp" | "apos" | "quot") {
        return true;
    }
    let code = if let Some(hex) = name.strip_prefix("#x") {
        u32::from_str_radix(hex, 16).ok()
    } else if let Some(dec) = name.strip_prefix('#') {
        dec.parse::<u32>().ok()
    } else {
        None
    };
    code.and_then(char::from_u32).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_names_and_text() {
        let src = r#"<?xml version="1.0"?><a:Root xmlns:a="x"><b>one &amp; two</b><c/><d xmlns=""><![CDATA[<raw>]]></d></a:Root>"#;
        let root = parse(src).expect("parses");
        assert_eq!(root.name, "Root");
        assert_eq!(root.text_of("b").as_deref(), Some("one & two"));
        assert_eq!(root.text_of("c"), None);
        assert_eq!(root.text_of("D").as_deref(), Some("<raw>"));
        let source = Source::plain(src);
        assert_eq!(
            root.child("b").map(|b| source.raw(b)),
            Some("<b>one &amp; two</b>")
        );
        assert_eq!(root.child("c").map(|c| source.raw(c)), Some("<c/>"));
    }

    #[test]
    fn errors_name_the_element() {
        let e = parse("<a><b>x</c></a>").expect_err("mismatched");
        assert_eq!(e.element, "b");
        let e = parse("<a><b>cut").expect_err("truncated");
        assert_eq!(e.element, "b");
        let e = parse("<a>&nbsp;</a>").expect_err("odd entity");
        assert_eq!(e.element, "a");
        assert!(parse("").is_err());
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).expect_err("deep").detail.contains("nest"));
    }

    #[test]
    fn odd_entities_are_stripped_and_known_ones_kept() {
        let text = |s: &str| strip_odd_entities(s).map(|s| s.text);
        assert_eq!(
            text("a&nbsp;b &amp; c&#65;&#xZZ;& d&toolongname;").as_deref(),
            Some("ab &amp; c&#65;& d&toolongname;")
        );
        assert_eq!(text("plain &amp; text"), None);
        assert_eq!(text("&"), None);
        assert_eq!(text("&é;x").as_deref(), Some("x"));
    }

    #[test]
    fn raw_comes_from_the_answer_as_received() {
        let original = "<r>&nbsp;<a>x&reg;y</a>&nbsp;<b/>&bull;</r>";
        let stripped = strip_odd_entities(original).expect("stripped");
        assert_eq!(stripped.text, "<r><a>xy</a><b/></r>");
        let root = parse(&stripped.text).expect("parses");
        let source = Source::stripped(original, &stripped);
        assert_eq!(
            root.child("a").map(|a| source.raw(a)),
            Some("<a>x&reg;y</a>")
        );
        assert_eq!(root.child("b").map(|b| source.raw(b)), Some("<b/>"));
        assert_eq!(source.raw(&root), original);
    }
}
