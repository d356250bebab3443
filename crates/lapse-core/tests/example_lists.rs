//! The access list shipped in `deploy/` parses and says what its comments say.

use lapse_core::GrantKind;
use lapse_core::access_list::parse_file;

#[test]
fn shipped_example_list_is_valid() {
    let text = include_str!("../../../deploy/access-lists.d/prod-db-oncall.toml");
    let lists = parse_file("prod-db-oncall.toml", text).expect("the shipped example parses");
    assert_eq!(lists.len(), 1);
    let l = &lists[0];
    assert_eq!(l.name, "prod-db-oncall");
    assert_eq!(l.target.kind, GrantKind::EphemeralGroup);
    assert_eq!(l.target.resources, vec!["prod-db".to_owned()]);
}
