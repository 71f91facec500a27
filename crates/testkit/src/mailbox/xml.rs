//! The little XML the double needs: a namespace-resolved element tree for reading requests, and
//! escaping for writing responses with plain string formatting.

use quick_xml::encoding::Decoder;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// The SOAP 1.1 envelope namespace.
pub(super) const SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// EWS messages namespace (`m:`).
pub(super) const MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
/// EWS types namespace (`t:`).
pub(super) const TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
/// EWS errors namespace (`e:`, SOAP fault details only).
pub(super) const ERRORS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";

/// One element of a request, with its namespace resolved.
#[derive(Clone, Debug, Default)]
pub(super) struct Element {
    pub(super) ns: String,
    pub(super) local: String,
    /// Unprefixed attributes (local name, unescaped value); namespace declarations dropped.
    pub(super) attrs: Vec<(String, String)>,
    pub(super) children: Vec<Element>,
    /// Text directly inside, concatenated and unescaped.
    pub(super) text: String,
    /// Byte offset of the start tag's `<` in the document.
    pub(super) offset: usize,
}

impl Element {
    pub(super) fn is(&self, ns: &str, local: &str) -> bool {
        self.ns == ns && self.local == local
    }

    pub(super) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child named `{ns}local`.
    pub(super) fn child(&self, ns: &str, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, local))
    }

    /// `{namespace}local`, as the .NET schema validator names elements in its messages.
    pub(super) fn describe(&self) -> String {
        format!("'{}' in namespace '{}'", self.local, self.ns)
    }
}

/// Parses a whole document into its root element. `Err` carries why the document is not
/// well-formed (or uses a DTD, which EWS refuses).
pub(super) fn parse(text: &str) -> Result<Element, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = NsReader::from_str(text);
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let decoder = reader.decoder();
    loop {
        let offset = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let (resolved, event) = reader.read_resolved_event().map_err(|e| e.to_string())?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let element = element(decoder, &resolved, e, offset)?;
                if root.is_some() && open.is_empty() {
                    return Err("the document has more than one root element".into());
                }
                if matches!(event, Event::Start(_)) {
                    open.push(element);
                } else {
                    close(element, &mut open, &mut root);
                }
            }
            Event::End(_) => {
                let element = open.pop().ok_or("an end tag has no start tag")?;
                close(element, &mut open, &mut root);
            }
            Event::Text(t) => {
                let t = t.unescape().map_err(|e| e.to_string())?;
                match open.last_mut() {
                    Some(parent) => parent.text.push_str(&t),
                    None if t.trim().is_empty() => {}
                    None => return Err("text outside the root element".into()),
                }
            }
            Event::CData(c) => {
                let c = String::from_utf8_lossy(&c).into_owned();
                match open.last_mut() {
                    Some(parent) => parent.text.push_str(&c),
                    None => return Err("CDATA outside the root element".into()),
                }
            }
            Event::DocType(_) => return Err("a DTD is not allowed".into()),
            Event::Eof => break,
            _ => {}
        }
    }
    if !open.is_empty() {
        return Err("the document ends inside an element".into());
    }
    root.ok_or_else(|| "the document has no root element".into())
}

fn element(
    decoder: Decoder,
    resolved: &ResolveResult<'_>,
    start: &BytesStart<'_>,
    offset: usize,
) -> Result<Element, String> {
    let ns = match resolved {
        ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
        ResolveResult::Unbound => String::new(),
        ResolveResult::Unknown(prefix) => {
            return Err(format!(
                "the prefix '{}' is not declared",
                String::from_utf8_lossy(prefix)
            ))
        }
    };
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let key = attr.key.as_ref();
        if key == b"xmlns" || key.starts_with(b"xmlns:") || attr.key.prefix().is_some() {
            continue;
        }
        let value = attr
            .decode_and_unescape_value(decoder)
            .map_err(|e| e.to_string())?;
        attrs.push((
            String::from_utf8_lossy(key).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(Element {
        ns,
        local: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
        attrs,
        children: Vec::new(),
        text: String::new(),
        offset,
    })
}

fn close(element: Element, open: &mut [Element], root: &mut Option<Element>) {
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// 1-based line and column of byte `offset` in `text`, as schema validators report them.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Escapes text for element content.
pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escapes text for a double-quoted attribute value.
pub(super) fn escape_attr(text: &str) -> String {
    escape(text).replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_carry_resolved_namespaces_attributes_and_text() {
        let doc = "<s:Envelope xmlns:s=\"urn:s\">\n  <m:Op xmlns:m=\"urn:m\" A=\"1 &amp; 2\">x &lt; y</m:Op></s:Envelope>";
        let root = parse(doc).expect("well-formed");
        assert!(root.is("urn:s", "Envelope"));
        let op = &root.children[0];
        assert!(op.is("urn:m", "Op"));
        assert_eq!(op.attr("A"), Some("1 & 2"));
        assert_eq!(op.text, "x < y");
        assert_eq!(line_column(doc, op.offset), (2, 3));
    }

    #[test]
    fn documents_that_are_not_well_formed_are_refused() {
        for bad in [
            "",
            "not xml",
            "<a><b></a>",
            "<a>",
            "<a/><b/>",
            "<!DOCTYPE a><a/>",
            "<p:a/>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn escaping_covers_markup_and_in_attributes_quotes() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;\"'");
        assert_eq!(escape_attr("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;'");
    }
}
