//! A small namespace-resolved element tree built with quick-xml's `NsReader`.
//!
//! EWS requests are small (the server caps them at 64 KiB), so decoding builds the whole tree
//! first and then checks it against the schema rules; every element keeps the line and column of
//! its start tag so that a violation can be reported the way Exchange does (`LineNumber`,
//! `LinePosition`). No DTD is ever processed: a `<!DOCTYPE` is refused outright, so no entity
//! (internal or external) can be expanded.

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::ns;

/// Limits applied while reading a document.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Limits {
    /// Deepest element nesting accepted (the root element is depth 1).
    pub max_depth: usize,
    /// Most elements accepted in one document.
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // The deepest legitimate request (an impersonation header) nests 5 levels; 32 leaves room
        // for unknown headers while stopping pathological nesting early.
        Self {
            max_depth: 32,
            max_elements: 4096,
        }
    }
}

/// A position in the source document, both 1-based (columns count characters).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Position {
    /// Line number.
    pub line: u32,
    /// Column, in characters.
    pub column: u32,
}

/// Why a document could not be read as XML at all.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    /// The document has no root element.
    #[error("the document is empty")]
    Empty,
    /// The bytes are not UTF-8.
    #[error("the document is not valid UTF-8 (byte {offset})")]
    InvalidUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The XML declaration names an encoding other than UTF-8.
    #[error("unsupported document encoding {0:?}; only UTF-8 is accepted")]
    UnsupportedEncoding(String),
    /// A `<!DOCTYPE` declaration was present.
    #[error("DOCTYPE declarations are not accepted (line {}, column {})", .0.line, .0.column)]
    Doctype(Position),
    /// The element nesting exceeds [`Limits::max_depth`].
    #[error("elements nest deeper than {limit} levels (line {}, column {})", .at.line, .at.column)]
    TooDeep {
        /// The limit.
        limit: usize,
        /// Where the limit was crossed.
        at: Position,
    },
    /// More elements than [`Limits::max_elements`].
    #[error("the document has more than {0} elements")]
    TooManyElements(usize),
    /// The document is not well-formed.
    #[error("malformed XML at line {}, column {}: {reason}", .at.line, .at.column)]
    Malformed {
        /// Where the problem was found.
        at: Position,
        /// What is wrong.
        reason: String,
    },
}

/// One attribute, with its namespace resolved (`""` for no namespace).
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Attribute {
    pub(crate) ns: Cow<'static, str>,
    pub(crate) local: String,
    pub(crate) value: String,
}

/// One element, with its namespace resolved (`""` for no namespace).
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Element {
    pub(crate) ns: Cow<'static, str>,
    pub(crate) local: String,
    pub(crate) attributes: Vec<Attribute>,
    pub(crate) children: Vec<Element>,
    /// All character data directly inside this element, concatenated.
    pub(crate) text: String,
    /// Byte offset of the first non-whitespace character data, if any.
    pub(crate) text_at: Option<usize>,
    /// Byte offset of the element's name in its start tag.
    pub(crate) at: usize,
}

impl Element {
    pub(crate) fn is(&self, ns: &str, local: &str) -> bool {
        self.ns == ns && self.local == local
    }

    pub(crate) fn attribute(&self, local: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.ns.is_empty() && a.local == local)
            .map(|a| a.value.as_str())
    }

    /// `{namespace}local`, the way violations name elements.
    pub(crate) fn qualified(&self) -> String {
        if self.ns.is_empty() {
            self.local.clone()
        } else {
            format!("{{{}}}{}", self.ns, self.local)
        }
    }
}

/// Maps byte offsets to line/column positions (computed only when a position is reported).
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Self { text, line_starts }
    }

    pub(crate) fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        Position {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column + 1).unwrap_or(u32::MAX),
        }
    }
}

/// The UTF-8 text of a document (BOM removed), or why it is not UTF-8.
pub(crate) fn document_text(input: &[u8]) -> Result<&str, XmlError> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    std::str::from_utf8(input).map_err(|e| XmlError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })
}

/// Interns the namespaces of the EWS contract so that elements do not each allocate their URI.
fn intern(bytes: &[u8]) -> Cow<'static, str> {
    for known in [
        ns::SOAP,
        ns::MESSAGES,
        ns::TYPES,
        ns::ERRORS,
        ns::XSI,
        ns::XSD,
        ns::XML,
        ns::SOAP12,
    ] {
        if known.as_bytes() == bytes {
            return Cow::Borrowed(known);
        }
    }
    Cow::Owned(utf8(bytes))
}

/// Reads `text` (from [`document_text`]) into an element tree.
pub(crate) fn parse(text: &str, limits: Limits) -> Result<Element, XmlError> {
    // Positions are only needed for error reports, so the line index is built on demand.
    let position = |offset: usize| LineIndex::new(text).position(offset);
    // XML 1.0 forbids most C0 control characters anywhere in a document; quick-xml does not
    // check this, so do it here before they can reach a handler.
    let forbidden = |b: u8| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r');
    // A branch-free pass (vectorised by the compiler) first; the position only on failure.
    let any_forbidden = text.bytes().fold(false, |found, b| found | forbidden(b));
    if let Some(offset) = any_forbidden
        .then(|| text.bytes().position(forbidden))
        .flatten()
    {
        return Err(XmlError::Malformed {
            at: position(offset),
            reason: "control character not allowed in XML".into(),
        });
    }

    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().expand_empty_elements = false;

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;

    loop {
        let start = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let malformed = |reason: String, offset: usize| XmlError::Malformed {
            at: position(offset),
            reason,
        };
        let (resolved, event) = match reader.read_resolved_event() {
            Ok(pair) => pair,
            Err(e) => {
                let offset = usize::try_from(reader.error_position()).unwrap_or(start);
                return Err(malformed(e.to_string(), offset));
            }
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                if root.is_some() {
                    return Err(malformed("content after the root element".into(), start));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                let at = start + 1;
                if stack.len() + 1 > limits.max_depth {
                    return Err(XmlError::TooDeep {
                        limit: limits.max_depth,
                        at: position(at),
                    });
                }
                let ns = match resolved {
                    ResolveResult::Bound(n) => intern(n.as_ref()),
                    ResolveResult::Unbound => Cow::Borrowed(""),
                    ResolveResult::Unknown(p) => {
                        return Err(malformed(
                            format!("namespace prefix '{}' is not declared", utf8(&p)),
                            start,
                        ))
                    }
                };
                let local = utf8(e.local_name().as_ref());
                let mut attributes = Vec::new();
                for attr in e.attributes() {
                    let attr = attr.map_err(|err| malformed(err.to_string(), start))?;
                    let key = attr.key;
                    if key.as_ref() == b"xmlns" || key.as_ref().starts_with(b"xmlns:") {
                        continue;
                    }
                    let (res, local) = reader.resolve_attribute(key);
                    let ns = match res {
                        ResolveResult::Bound(n) => intern(n.as_ref()),
                        ResolveResult::Unbound => Cow::Borrowed(""),
                        ResolveResult::Unknown(p) => {
                            let p = utf8(&p);
                            // `xml:` is predeclared by the XML namespaces recommendation.
                            if p == "xml" {
                                Cow::Borrowed(ns::XML)
                            } else {
                                return Err(malformed(
                                    format!("namespace prefix '{p}' is not declared"),
                                    start,
                                ));
                            }
                        }
                    };
                    let value = attr
                        .decode_and_unescape_value(reader.decoder())
                        .map_err(|err| malformed(err.to_string(), start))?
                        .into_owned();
                    attributes.push(Attribute {
                        ns,
                        local: utf8(local.as_ref()),
                        value,
                    });
                }
                let element = Element {
                    ns,
                    local,
                    attributes,
                    children: Vec::new(),
                    text: String::new(),
                    text_at: None,
                    at,
                };
                if empty {
                    close(&mut stack, &mut root, element);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| malformed("unexpected end tag".into(), start))?;
                close(&mut stack, &mut root, element);
            }
            Event::Text(t) => {
                let value = t
                    .unescape()
                    .map_err(|err| malformed(err.to_string(), start))?;
                push_text(&mut stack, &value, start).map_err(|reason| malformed(reason, start))?;
            }
            Event::CData(c) => {
                let value = utf8(&c.into_inner());
                push_text(&mut stack, &value, start).map_err(|reason| malformed(reason, start))?;
            }
            Event::Decl(d) => {
                if let Some(Ok(encoding)) = d.encoding() {
                    let encoding = utf8(&encoding);
                    if !encoding.eq_ignore_ascii_case("utf-8") {
                        return Err(XmlError::UnsupportedEncoding(encoding));
                    }
                }
            }
            Event::DocType(_) => return Err(XmlError::Doctype(position(start))),
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => {
                if !stack.is_empty() {
                    return Err(malformed(
                        "unexpected end of document: an element is not closed".into(),
                        text.len(),
                    ));
                }
                return root.ok_or(XmlError::Empty);
            }
        }
    }
}

fn close(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn push_text(stack: &mut [Element], value: &str, offset: usize) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => {
            if parent.text_at.is_none() {
                if let Some(skip) = value.find(|c: char| !c.is_whitespace()) {
                    parent.text_at = Some(offset + skip);
                }
            }
            parent.text.push_str(value);
            Ok(())
        }
        None if value.trim().is_empty() => Ok(()),
        None => Err("text outside the root element".into()),
    }
}

/// Every slice handed out by the reader comes from a `&str`, so it is UTF-8 unless quick-xml
/// split a character, which it does not; the lossy path is only a guard.
fn utf8(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_bytes(input: &[u8]) -> Result<Element, XmlError> {
        parse(document_text(input)?, Limits::default())
    }

    #[test]
    fn resolves_prefixes_default_namespaces_and_positions() {
        let doc = "\u{feff}<?xml version=\"1.0\"?>\n<a:r xmlns:a=\"urn:a\" xmlns=\"urn:d\">\n  <c x=\"1\">t&amp;u</c></a:r>";
        let text = document_text(doc.as_bytes()).unwrap();
        let index = LineIndex::new(text);
        let root = parse(text, Limits::default()).unwrap();
        assert!(root.is("urn:a", "r"));
        assert_eq!(index.position(root.at), Position { line: 2, column: 2 });
        let child = &root.children[0];
        assert!(child.is("urn:d", "c"));
        assert_eq!(child.attribute("x"), Some("1"));
        assert_eq!(child.text, "t&u");
        assert_eq!(index.position(child.at), Position { line: 3, column: 4 });
    }

    #[test]
    fn refuses_doctype_and_undeclared_prefix_and_bad_utf8() {
        let doctype = b"<!DOCTYPE r [<!ENTITY a \"b\">]><r>&a;</r>";
        assert!(matches!(parse_bytes(doctype), Err(XmlError::Doctype(_))));
        assert!(matches!(
            parse_bytes(b"<p:r/>"),
            Err(XmlError::Malformed { .. })
        ));
        assert!(matches!(
            parse_bytes(b"<r>\xff</r>"),
            Err(XmlError::InvalidUtf8 { offset: 3 })
        ));
    }

    #[test]
    fn refuses_unknown_entities_unclosed_and_trailing_content() {
        for doc in ["<r>&bogus;</r>", "<r><s></r>", "<r/><r/>", "<r>", "", "  "] {
            assert!(parse_bytes(doc.as_bytes()).is_err(), "{doc:?} was accepted");
        }
    }

    #[test]
    fn enforces_depth_limit() {
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert!(matches!(
            parse_bytes(deep.as_bytes()),
            Err(XmlError::TooDeep { limit: 32, .. })
        ));
    }
}
