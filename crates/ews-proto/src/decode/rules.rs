//! Schema rules: the `messages.xsd` / `types.xsd` constraints the three operations rely on
//! (`xs:sequence` order and occurrence, declared and required attributes, empty and text-only
//! content models, `xs:language`), checked on the element tree and worded the way the .NET
//! schema validator that Exchange uses words them.
//!
//! A broken rule is a [`Problem`]: a violation at a byte offset (turned into the line and column
//! of `ErrorSchemaValidation` only when reported), or a [`RequestError`] of another kind.

use super::request::RequestError;
use crate::ns;
use crate::xml::Element;

/// A request problem found while walking the tree; schema violations carry a byte offset that
/// is turned into a line and column only when reported.
pub(super) enum Problem {
    /// A problem that is not a schema violation.
    Request(RequestError),
    /// A schema violation at a byte offset of the document.
    Violation { offset: usize, violation: String },
}

impl From<RequestError> for Problem {
    fn from(e: RequestError) -> Self {
        Self::Request(e)
    }
}

/// `sequence` never returns `None` for a required particle; this keeps that invariant explicit
/// without a panic, and a break of it is reported as the server's fault, naming `element`.
pub(super) fn required<'a>(
    found: Option<&'a Element>,
    element: &'static str,
) -> Result<&'a Element, Problem> {
    found.ok_or(Problem::Request(RequestError::Invariant(element)))
}

/// One element of an `xs:sequence` (every particle here has maxOccurs = 1).
pub(super) struct Particle {
    ns: &'static str,
    name: &'static str,
    required: bool,
}

impl Particle {
    pub(super) const fn required(ns: &'static str, name: &'static str) -> Self {
        Self {
            ns,
            name,
            required: true,
        }
    }

    pub(super) const fn optional(ns: &'static str, name: &'static str) -> Self {
        Self {
            ns,
            name,
            required: false,
        }
    }
}

/// Matches `parent`'s children against a sequence, returning the element for each particle.
pub(super) fn sequence<'a>(
    parent: &'a Element,
    particles: &[Particle],
) -> Result<Vec<Option<&'a Element>>, Problem> {
    no_text(parent)?;
    let mut found = vec![None; particles.len()];
    let mut next = 0;
    for child in &parent.children {
        let matched = particles[next..]
            .iter()
            .position(|p| child.is(p.ns, p.name))
            .map(|offset| next + offset);
        let skipped_required = matched
            .map(|m| particles[next..m].iter().any(|p| p.required))
            .unwrap_or(true);
        match matched {
            Some(m) if !skipped_required => {
                found[m] = Some(child);
                next = m + 1;
            }
            _ => {
                return Err(violation(
                    child,
                    format!(
                        "The element '{}' in namespace '{}' has invalid child element {}.{}{}",
                        parent.local,
                        parent.ns,
                        describe(child),
                        expected(&particles[next..]),
                        https_hint(&child.ns)
                    ),
                ))
            }
        }
    }
    if particles[next..].iter().any(|p| p.required) {
        return Err(Problem::Violation {
            offset: parent.at,
            violation: format!(
                "The element '{}' in namespace '{}' has incomplete content.{}",
                parent.local,
                parent.ns,
                expected(&particles[next..])
            ),
        });
    }
    Ok(found)
}

fn expected(rest: &[Particle]) -> String {
    let mut names = Vec::new();
    for p in rest {
        names.push(p);
        if p.required {
            break;
        }
    }
    match names.as_slice() {
        [] => String::new(),
        [first, ..] => format!(
            " List of possible elements expected: '{}' in namespace '{}'.",
            names.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
            first.ns
        ),
    }
}

/// Every attribute of `el` is declared (`allowed`, or `xsi:`/`xml:`), and the `required` ones are
/// present.
pub(super) fn attributes(el: &Element, allowed: &[&str], required: &[&str]) -> Result<(), Problem> {
    for attr in &el.attributes {
        let foreign_ok = attr.ns == ns::XSI || attr.ns == ns::XML;
        let declared = attr.ns.is_empty() && allowed.contains(&attr.local.as_str());
        if !(foreign_ok || declared) {
            let name = if attr.ns.is_empty() {
                attr.local.clone()
            } else {
                format!("{}:{}", attr.ns, attr.local)
            };
            return Err(violation(
                el,
                format!("The '{name}' attribute is not declared."),
            ));
        }
    }
    for name in required {
        if el.attribute(name).is_none() {
            return Err(violation(
                el,
                format!("The required attribute '{name}' is missing."),
            ));
        }
    }
    Ok(())
}

/// Element-only content: no character data other than whitespace.
pub(super) fn no_text(el: &Element) -> Result<(), Problem> {
    match el.text_at {
        Some(offset) => Err(Problem::Violation {
            offset,
            violation: format!(
                "The element '{}' in namespace '{}' cannot contain text.",
                el.local, el.ns
            ),
        }),
        None => Ok(()),
    }
}

/// An empty content model: no text and no child element.
pub(super) fn empty_content(el: &Element) -> Result<(), Problem> {
    no_text(el)?;
    match el.children.first() {
        Some(child) => Err(violation(
            child,
            format!(
                "The element '{}' in namespace '{}' cannot contain child element {} because the parent element's content model is empty.",
                el.local,
                el.ns,
                describe(child)
            ),
        )),
        None => Ok(()),
    }
}

/// A simple-content element without attributes: its text, provided it has no child element.
pub(super) fn text_only(el: &Element) -> Result<&str, Problem> {
    attributes(el, &[], &[])?;
    match el.children.first() {
        Some(child) => Err(violation(
            child,
            format!(
                "The element '{}' in namespace '{}' cannot contain child element {} because the parent element's content model is text only.",
                el.local,
                el.ns,
                describe(child)
            ),
        )),
        None => Ok(&el.text),
    }
}

/// A violation reported at `el`'s start tag.
pub(super) fn violation(el: &Element, violation: String) -> Problem {
    Problem::Violation {
        offset: el.at,
        violation,
    }
}

/// A violation reported at `el`'s text (or its start tag when it has none).
pub(super) fn text_violation(el: &Element, violation: String) -> Problem {
    Problem::Violation {
        offset: el.text_at.unwrap_or(el.at),
        violation,
    }
}

/// An element's name as violations quote it.
pub(super) fn describe(el: &Element) -> String {
    if el.ns.is_empty() {
        format!("'{}' (no namespace)", el.local)
    } else {
        format!("'{}' in namespace '{}'", el.local, el.ns)
    }
}

/// A hint for the common mistake of `https://` namespace URIs.
pub(super) fn https_hint(namespace: &str) -> &'static str {
    if namespace.starts_with("https://schemas.microsoft.com/exchange/services/2006/")
        || namespace.starts_with("https://schemas.xmlsoap.org/")
    {
        " EWS and SOAP namespace URIs start with 'http://', not 'https://'."
    } else {
        ""
    }
}

/// `xs:language` (RFC 3066 shape): one or more `-`-separated parts of 1 to 8 ASCII letters or
/// digits.
pub(super) fn xs_language(value: &str) -> bool {
    !value.is_empty()
        && value.split('-').all(|part| {
            (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}
