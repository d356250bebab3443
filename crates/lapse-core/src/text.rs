//! Free text at the edges: limits and control characters on the way in, Slack and CSV escaping on the way out.

use std::borrow::Cow;
use std::fmt;

/// The longest reason (request, approval, denial, cancellation, review, revocation), in
/// characters: a ticket id and a few sentences fit; a pasted log does not belong in the
/// append-only history.
pub const MAX_REASON_CHARS: usize = 1_000;

/// The longest name or identity (token names, identities, list names), in characters: an
/// email address may be 254 octets by RFC 5321, but the identities lapse deals in are far
/// shorter, and every name is shown in one table cell.
pub const MAX_NAME_CHARS: usize = 128;

/// What kind of free text a field holds, which sets its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Up to [`MAX_REASON_CHARS`]; may be empty (a field that requires a reason says so itself).
    Reason,
    /// Up to [`MAX_NAME_CHARS`]; must not be empty or only spaces.
    Name,
}

impl TextKind {
    pub fn max_chars(self) -> usize {
        match self {
            Self::Reason => MAX_REASON_CHARS,
            Self::Name => MAX_NAME_CHARS,
        }
    }
}

/// Why a free-text field was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextProblem {
    TooLong {
        chars: usize,
        max: usize,
    },
    /// `position` counts characters from 1.
    ControlCharacter {
        ch: char,
        position: usize,
    },
    Empty,
    /// Starts with a prefix kept for callers that are not API tokens.
    Reserved {
        prefix: &'static str,
    },
}

/// How the API names a caller signed in at the OpenID issuer; no API token may be named so,
/// so the two kinds of caller never share a name (the history's actor, a grant's requester, a
/// grant policy's `tokens`).
pub const OIDC_CALLER_PREFIX: &str = "oidc:";

/// The caller name of `identity` signed in at the OpenID issuer.
pub fn oidc_caller_name(identity: &str) -> String {
    format!("{OIDC_CALLER_PREFIX}{identity}")
}

/// A free-text field that was refused, naming the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct TextError {
    pub field: String,
    pub problem: TextProblem,
}

impl fmt::Display for TextProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { chars, max } => write!(
                f,
                "is {chars} characters long, more than the {max} allowed; shorten it \
                 (link to a ticket or document for details)"
            ),
            Self::ControlCharacter { ch, position } => write!(
                f,
                "contains the control character U+{:04X} at character {position}; remove it \
                 (this field is one line of plain text: no line breaks, tabs, escapes or \
                 direction overrides)",
                u32::from(*ch)
            ),
            Self::Empty => f.write_str("is empty; give a value"),
            Self::Reserved { prefix } => write!(
                f,
                "starts with `{prefix}`, which names people signed in at the OpenID issuer; \
                 choose another name"
            ),
        }
    }
}

/// Whether `ch` may not appear in free text: C0 and C1 controls and DEL (NUL, CR, LF, tab,
/// ESC, ...), the Unicode line and paragraph separators, and the bidirectional overrides and
/// isolates that make a terminal or a browser show text in another order than it is stored.
pub fn is_forbidden_char(ch: char) -> bool {
    ch.is_control()
        || matches!(
            ch,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Checks one free-text field: its length in characters and that it has no forbidden
/// character (see [`is_forbidden_char`]). `field` names it in the error, as the caller knows
/// it (`reason`, `--name`, `identity`).
pub fn check_text(field: &str, value: &str, kind: TextKind) -> Result<(), TextError> {
    let err = |problem| TextError {
        field: field.to_owned(),
        problem,
    };
    if let Some((i, ch)) = value
        .chars()
        .enumerate()
        .find(|(_, c)| is_forbidden_char(*c))
    {
        return Err(err(TextProblem::ControlCharacter {
            ch,
            position: i + 1,
        }));
    }
    let chars = value.chars().count();
    if chars > kind.max_chars() {
        return Err(err(TextProblem::TooLong {
            chars,
            max: kind.max_chars(),
        }));
    }
    if kind == TextKind::Name && value.trim().is_empty() {
        return Err(err(TextProblem::Empty));
    }
    Ok(())
}

/// [`check_text`] for a reason.
pub fn check_reason(field: &str, value: &str) -> Result<(), TextError> {
    check_text(field, value, TextKind::Reason)
}

/// [`check_text`] for a name or identity.
pub fn check_name(field: &str, value: &str) -> Result<(), TextError> {
    check_text(field, value, TextKind::Name)
}

/// Escapes text for a Slack `mrkdwn` field as Slack documents: `&` → `&amp;`, `<` → `&lt;`,
/// `>` → `&gt;`.
///
/// Slack reads mentions (`<!channel>`, `<!here>`, `<@U123>`, `<#C123>`) and links
/// (`<https://…|text>`) only between angle brackets, so once these three are escaped, text
/// from a user shows as typed and can neither notify a channel nor disguise a link. Bold and
/// italic markers (`*`, `_`, `~`, `` ` ``) have no escape in mrkdwn and are left: they change
/// how text looks, not what it does.
pub fn slack_escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Makes a CSV cell safe to open in a spreadsheet, as OWASP advises against formula
/// injection: a cell beginning with `=`, `+`, `-`, `@`, tab or carriage return gets a leading
/// `'`, so it is shown as text and never evaluated.
///
/// Quoting (commas, quotes, line breaks) is the CSV writer's job and is not done here. A
/// negative number in a free-text column is prefixed too; apply this to text columns, not
/// to numeric ones.
pub fn csv_cell(text: &str) -> Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slack_mentions_and_links_are_neutralised() {
        let reason =
            "INC-1 <!channel> <!here> <@U024BE7LH> <https://evil.example|Click here to approve>";
        let escaped = slack_escape(reason);
        assert_eq!(
            escaped,
            "INC-1 &lt;!channel&gt; &lt;!here&gt; &lt;@U024BE7LH&gt; \
             &lt;https://evil.example|Click here to approve&gt;"
        );
        assert_eq!(slack_escape("a & b"), "a &amp; b");
        // An already-escaped entity is escaped again: it is shown as typed.
        assert_eq!(slack_escape("&lt;"), "&amp;lt;");
        assert!(matches!(
            slack_escape("INC-42 db"),
            Cow::Borrowed("INC-42 db")
        ));
    }

    #[test]
    fn csv_formula_starts_are_prefixed() {
        for bad in [
            "=HYPERLINK(\"http://evil.example\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(csv_cell(bad), format!("'{bad}"), "{bad:?}");
        }
        for good in ["INC-1", "", "a=b", " =1", "'quoted"] {
            assert_eq!(csv_cell(good), good, "{good:?}");
        }
    }

    #[test]
    fn free_text_errors_name_the_field_and_the_fix() {
        let err = check_reason("reason", &"x".repeat(1_001)).unwrap_err();
        assert_eq!(err.field, "reason");
        assert_eq!(
            err.problem,
            TextProblem::TooLong {
                chars: 1_001,
                max: 1_000
            }
        );
        assert!(
            err.to_string().starts_with("reason: is 1001 characters"),
            "{err}"
        );
        assert!(err.to_string().contains("shorten it"), "{err}");

        for (text, ch, position) in [
            ("INC-1\0", '\0', 6),
            ("INC-1\r\nApproved", '\r', 6),
            ("\u{1b}[31mred", '\u{1b}', 1),
            ("a\tb", '\t', 2),
            ("abc\u{202E}gpj.exe", '\u{202E}', 4),
            ("x\u{85}", '\u{85}', 2),
        ] {
            let err = check_reason("approve reason", text).unwrap_err();
            assert_eq!(err.problem, TextProblem::ControlCharacter { ch, position });
            assert!(err.to_string().contains("remove it"), "{err}");
        }
        assert!(check_reason("reason", "").is_ok());
        assert!(check_reason("reason", &"é".repeat(1_000)).is_ok());
    }

    #[test]
    fn names_are_short_and_not_blank() {
        assert!(check_name("--name", "ci-deploy").is_ok());
        assert!(check_name("--name", &"n".repeat(128)).is_ok());
        assert_eq!(
            check_name("--name", &"n".repeat(129)).unwrap_err().problem,
            TextProblem::TooLong {
                chars: 129,
                max: 128
            }
        );
        assert_eq!(
            check_name("--identity", "  ").unwrap_err().problem,
            TextProblem::Empty
        );
    }

    proptest! {
        #[test]
        fn slack_escaped_text_has_no_angle_brackets_and_unescapes_back(s in any::<String>()) {
            let e = slack_escape(&s);
            prop_assert!(!e.contains('<') && !e.contains('>'));
            let back = e.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
            prop_assert_eq!(back, s);
        }

        #[test]
        fn csv_cells_never_start_a_formula(s in any::<String>()) {
            let c = csv_cell(&s);
            prop_assert!(!c.starts_with(['=', '+', '-', '@', '\t', '\r']));
            // Nothing is lost: the prefix is the only change.
            prop_assert!(c == s || c.strip_prefix('\'') == Some(s.as_str()));
        }

        #[test]
        fn check_text_accepts_exactly_short_text_without_forbidden_chars(s in any::<String>()) {
            let ok = s.chars().count() <= MAX_REASON_CHARS && !s.chars().any(is_forbidden_char);
            prop_assert_eq!(check_reason("reason", &s).is_ok(), ok);
        }
    }
}
