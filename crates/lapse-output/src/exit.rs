//! The process's exit code by class of outcome, so that scripts can tell "try again later" from
//! "fix the request" from "ask for access" without reading stderr.

use crate::ErrorBody;

/// Success.
pub const OK: u8 = 0;
/// The daemon failed (a 5xx), could not be reached, or answered something that is not lapse;
/// also an audit that found the history broken.
pub const SERVER: u8 = 1;
/// Wrong use of the command line: an unknown flag, a missing argument, a bad `--url`.
pub const USAGE: u8 = 2;
/// Not authenticated (no token, a refused token) or not allowed (the role, or no list or grant
/// policy allows it).
pub const NOT_ALLOWED: u8 = 3;
/// The grant, request, list or token named does not exist (or is not visible to the caller).
pub const NOT_FOUND: u8 = 4;
/// The request itself was refused: a field that fails validation, a conflict with the current
/// state, or a list's rule (self-approval, suspended list, no break-glass, not yet due).
pub const REFUSED: u8 = 5;
/// `--wait` ended with the grant in a state other than active (failed, still applying, ended).
pub const NOT_ACTIVE: u8 = 6;

/// The table `--help` ends with and the README repeats.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  ok
  1  server error, or the daemon could not be reached
  2  usage: a bad flag or argument
  3  not authenticated, or not allowed
  4  not found
  5  refused: validation, conflict, or a list's rule
  6  --wait ended with the grant not active";

/// Error codes of a 403 that refuse the request by a list's rule rather than the caller's
/// standing: the same caller may succeed with a different request.
const POLICY_CODES: [&str; 3] = ["self_approval", "list_suspended", "refused"];

/// The exit class of an error answer from the API: its status and, for a 403, its error code.
pub fn for_api(status: u16, body: &[u8]) -> u8 {
    match status {
        401 => NOT_ALLOWED,
        403 => {
            let code = serde_json::from_slice::<ErrorBody>(body)
                .map(|b| b.error.code)
                .unwrap_or_default();
            if POLICY_CODES.contains(&code.as_str()) {
                REFUSED
            } else {
                NOT_ALLOWED
            }
        }
        404 => NOT_FOUND,
        400..=499 => REFUSED,
        _ => SERVER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: &str) -> Vec<u8> {
        serde_json::json!({"error": {"code": code, "message": "m"}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn classes_follow_status_and_code() {
        assert_eq!(for_api(401, &body("unauthorized")), NOT_ALLOWED);
        assert_eq!(for_api(403, &body("forbidden")), NOT_ALLOWED);
        assert_eq!(for_api(403, &body("not_authorized")), NOT_ALLOWED);
        assert_eq!(for_api(403, &body("self_approval")), REFUSED);
        assert_eq!(for_api(403, &body("list_suspended")), REFUSED);
        assert_eq!(for_api(403, &body("refused")), REFUSED);
        assert_eq!(for_api(403, b"<html>proxy</html>"), NOT_ALLOWED);
        assert_eq!(for_api(404, &body("not_found")), NOT_FOUND);
        assert_eq!(for_api(400, &body("invalid_field")), REFUSED);
        assert_eq!(for_api(409, &body("conflict")), REFUSED);
        assert_eq!(for_api(410, &body("token_gone")), REFUSED);
        assert_eq!(for_api(500, &body("internal")), SERVER);
        assert_eq!(for_api(503, &body("twingate_unavailable")), SERVER);
        assert_eq!(for_api(302, b""), SERVER);
    }
}
