//! Errors as one log line.

/// An error and its sources, `: `-joined, for one log field — so a log line keeps the whole
/// cause chain ("cannot record call status: storage backend error: disk I/O error"). A source
/// whose text its error already shows (errors that print their cause too) is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Telling(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause_in_order() {
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&error), "outer: inner");
    }

    #[test]
    fn a_cause_the_error_already_prints_is_not_repeated() {
        let error = Telling(std::io::Error::other("inner"));
        assert_eq!(error_chain(&error), "outer: inner");
    }
}
